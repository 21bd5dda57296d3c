import type { Knex } from 'knex';

/**
 * Worker registration: pre-shared keys (stored as SHA-256 digests, several active at once so
 * rotation overlaps), registered workers with their current capability report and session,
 * and the full history of every report a worker has sent.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('psks', (t) => {
    t.text('id').primary();
    t.text('name').notNullable();
    t.binary('secret_sha256').notNullable();
    t.text('created_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('expires_at', { useTz: true });
    t.timestamp('revoked_at', { useTz: true });
    t.timestamp('last_used_at', { useTz: true });
  });
  await knex.schema.createTable('workers', (t) => {
    t.text('node_id').primary();
    t.jsonb('capabilities').notNullable();
    t.text('capabilities_sha256').notNullable();
    // A new registration starts a new session; tokens of the old session stop working.
    t.uuid('session_id').notNullable();
    t.text('psk_id').notNullable().references('psks.id');
    t.text('source').notNullable();
    t.jsonb('health');
    t.jsonb('load');
    t.timestamp('registered_at', { useTz: true }).notNullable();
    t.timestamp('last_seen_at', { useTz: true }).notNullable();
    // Until then the node id belongs to this session; another registration for it is refused.
    t.timestamp('held_until', { useTz: true }).notNullable();
  });
  await knex.schema.createTable('capability_reports', (t) => {
    t.bigIncrements('id');
    t.text('node_id').notNullable().references('workers.node_id');
    t.uuid('session_id').notNullable();
    t.jsonb('report').notNullable();
    t.text('reason').notNullable();
    t.timestamp('reported_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['node_id', 'reported_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('capability_reports');
  await knex.schema.dropTable('workers');
  await knex.schema.dropTable('psks');
}
