import type { Knex } from 'knex';

/**
 * Runtime settings: operational switches that must act in seconds without a bundle rebuild
 * (the cloud routing kill switch and the like). Layered over bundle data as `data.runtime`.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('settings', (t) => {
    t.text('key').primary();
    t.jsonb('value').notNullable();
    t.text('updated_by').notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('settings');
}
