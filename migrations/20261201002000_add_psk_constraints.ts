import type { Knex } from 'knex';

/**
 * A PSK may carry constraints (node-id pattern, allowed labels, regions) that the register
 * policy enforces, so one fleet's key cannot register another fleet's nodes. Null: unscoped.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('psks', (t) => {
    t.jsonb('constraints');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('psks', (t) => {
    t.dropColumn('constraints');
  });
}
