import type { Knex } from 'knex';

/**
 * Console sessions, shared by every replica so a signed-in operator may land on any of them:
 * the SHA-256 digest of the cookie value (never the value), the principal it stands for, its
 * CSRF token and when it ends.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('console_sessions', (t) => {
    t.text('id_digest').primary();
    t.text('kind').notNullable(); // admin | reader
    t.text('principal_id').notNullable();
    t.text('csrf').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable();
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.index(['expires_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('console_sessions');
}
