import type { Knex } from 'knex';

/**
 * An index on the decision log's timestamp, so a replay window (`since`) finds its first row
 * without reading the log from the beginning; the replay then pages by `seq`.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE INDEX decision_log_timestamp_idx ON decision_log (timestamp)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX IF EXISTS decision_log_timestamp_idx');
}
