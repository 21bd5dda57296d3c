import type { Knex } from 'knex';

/**
 * Provider credentials, envelope-encrypted: each secret is sealed with its own data key
 * (AES-256-GCM), and the data key is sealed with the master key named by `kid`. The master
 * key never reaches the database; neither does any secret in the clear.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('credentials', (t) => {
    t.uuid('id').primary();
    t.text('provider').notNullable();
    t.text('name').notNullable();
    t.text('owner_user');
    t.text('owner_group');
    t.text('kid').notNullable();
    t.binary('wrapped_key').notNullable();
    t.binary('sealed_secret').notNullable();
    t.integer('version').notNullable();
    t.boolean('active').notNullable();
    t.timestamp('expires_at', { useTz: true });
    t.text('created_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable();
    t.timestamp('rotated_at', { useTz: true });
    t.timestamp('disabled_at', { useTz: true });
    t.unique(['provider', 'name']);
    t.index(['kid']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('credentials');
}
