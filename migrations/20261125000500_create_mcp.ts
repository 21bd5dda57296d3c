import type { Knex } from 'knex';

/**
 * MCP: the audit of every tool call through the gateway (append-only, hash-chained like the
 * decision log), and the artifact store of the reference upstream tool server (files scoped
 * to a task).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('tool_audit', (t) => {
    t.bigIncrements('seq').primary();
    t.uuid('request_id').notNullable();
    t.timestamp('at', { useTz: true, precision: 3 }).notNullable();
    t.text('subject_id').notNullable();
    t.text('agent_type').notNullable();
    t.text('task_id');
    t.text('job_id');
    t.text('tool').notNullable();
    t.text('outcome').notNullable(); // ok | denied | error
    t.text('error_code');
    t.text('decision_id');
    t.jsonb('reasons').notNullable();
    t.text('revision');
    t.double('latency_ms');
    t.text('prev_hash').notNullable();
    t.text('hash').notNullable();
  });
  await knex.raw('CREATE INDEX tool_audit_task_idx ON tool_audit (task_id, seq)');
  await knex.raw(`
    CREATE FUNCTION tool_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'tool_audit is append-only';
    END $$`);
  await knex.raw(
    'CREATE TRIGGER tool_audit_append_only BEFORE UPDATE OR DELETE ON tool_audit FOR EACH ROW EXECUTE FUNCTION tool_audit_append_only()',
  );

  await knex.schema.createTable('artifacts', (t) => {
    t.text('task_id').notNullable();
    t.text('name').notNullable();
    t.text('content').notNullable();
    t.text('sha256').notNullable();
    t.integer('size').notNullable();
    t.text('written_by').notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable();
    t.primary(['task_id', 'name']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('artifacts');
  await knex.schema.dropTable('tool_audit');
  await knex.raw('DROP FUNCTION IF EXISTS tool_audit_append_only()');
}
