import type { Knex } from 'knex';

/**
 * Public halves of the JWT signing keys. Each replica generates its own private key in
 * memory (it never reaches the database), publishes the public JWK here, and rotates it;
 * `/.well-known/jwks.json` serves every key still inside its verification window.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('signing_keys', (t) => {
    t.text('kid').primary();
    t.text('alg').notNullable();
    t.jsonb('public_jwk').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('retired_at', { useTz: true });
    t.timestamp('verify_until', { useTz: true }).notNullable();
    t.index(['verify_until']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('signing_keys');
}
