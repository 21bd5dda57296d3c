import type { Knex } from 'knex';

/**
 * What the console shows of bundles across replicas: every activation any replica made (the
 * bundle history), and per replica the bundle it runs now with when it last said so.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('bundle_activations', (t) => {
    t.bigIncrements('id').primary();
    t.text('replica').notNullable();
    t.text('revision').notNullable();
    t.text('digest').notNullable();
    t.text('source').notNullable();
    t.timestamp('activated_at', { useTz: true }).notNullable();
    t.index(['activated_at']);
  });
  await knex.schema.createTable('replica_bundles', (t) => {
    t.text('replica').primary();
    t.text('revision').notNullable();
    t.text('digest').notNullable();
    t.timestamp('activated_at', { useTz: true }).notNullable();
    t.timestamp('seen_at', { useTz: true }).notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('replica_bundles');
  await knex.schema.dropTable('bundle_activations');
}
