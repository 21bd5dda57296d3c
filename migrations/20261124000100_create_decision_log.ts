import type { Knex } from 'knex';

/**
 * The decision log: one row per policy decision in OPA's decision-log shape, append-only
 * (a trigger refuses UPDATE and DELETE) and hash-chained (each row's hash covers the previous
 * row's), so an edited or removed row is detectable by `cynode-gateway audit verify`.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('decision_log', (t) => {
    t.bigIncrements('seq').primary();
    t.uuid('decision_id').notNullable().unique();
    t.text('path').notNullable();
    t.jsonb('input');
    t.jsonb('result');
    t.jsonb('error');
    t.jsonb('erased').notNullable();
    t.text('revision');
    t.text('bundle_digest');
    t.text('requested_by');
    t.timestamp('timestamp', { useTz: true, precision: 3 }).notNullable();
    t.bigInteger('eval_ns').notNullable();
    t.text('prev_hash').notNullable();
    t.text('hash').notNullable();
  });
  await knex.raw(`
    CREATE FUNCTION decision_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'decision_log is append-only';
    END $$`);
  await knex.raw(`
    CREATE TRIGGER decision_log_append_only BEFORE UPDATE OR DELETE ON decision_log
    FOR EACH ROW EXECUTE FUNCTION decision_log_append_only()`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('decision_log');
  await knex.raw('DROP FUNCTION IF EXISTS decision_log_append_only()');
}
