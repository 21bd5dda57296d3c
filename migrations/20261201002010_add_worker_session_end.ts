import type { Knex } from 'knex';

/**
 * A worker session can end before its token expires: the worker deregisters (its node id is
 * free again at once) or an admin quarantines the node (refused until released). Every
 * quarantine and release is kept in `worker_audit`, append-only and hash-chained.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('workers', (t) => {
    t.timestamp('session_ended_at', { useTz: true });
    t.timestamp('quarantined_at', { useTz: true });
    t.text('quarantine_reason');
    t.text('quarantined_by');
  });
  await knex.schema.createTable('worker_audit', (t) => {
    t.bigIncrements('seq');
    t.uuid('event_id').notNullable();
    t.timestamp('at', { useTz: true }).notNullable();
    t.text('node_id').notNullable();
    t.text('action').notNullable(); // quarantine | release
    t.text('reason');
    t.text('actor').notNullable();
    t.text('prev_hash').notNullable();
    t.text('hash').notNullable();
  });
  await knex.raw('CREATE INDEX worker_audit_node_idx ON worker_audit (node_id, seq)');
  await knex.raw(`
    CREATE FUNCTION worker_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'worker_audit is append-only';
    END $$`);
  await knex.raw(
    'CREATE TRIGGER worker_audit_append_only BEFORE UPDATE OR DELETE ON worker_audit FOR EACH ROW EXECUTE FUNCTION worker_audit_append_only()',
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('worker_audit');
  await knex.raw('DROP FUNCTION IF EXISTS worker_audit_append_only()');
  await knex.schema.alterTable('workers', (t) => {
    t.dropColumn('quarantined_by');
    t.dropColumn('quarantine_reason');
    t.dropColumn('quarantined_at');
    t.dropColumn('session_ended_at');
  });
}
