import type { Knex } from 'knex';

/**
 * User preferences by scope (system, group, user, project); the task level travels with the
 * job. Effective preferences resolve system < group < user < project < task.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('preferences', (t) => {
    t.text('scope').notNullable();
    t.text('scope_id').notNullable();
    t.text('key').notNullable();
    t.jsonb('value').notNullable();
    t.text('updated_by').notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['scope', 'scope_id', 'key']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('preferences');
}
