import type { Knex } from 'knex';

/**
 * The job queue. A job is leased by one worker at a time (claimed with FOR UPDATE SKIP
 * LOCKED); each lease is an attempt with its own id, which fences status and results. The
 * last dispatch decision per job and node says why a job waits; idempotency keys replay the
 * first answer to a repeated submission.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('jobs', (t) => {
    t.uuid('id').primary();
    t.text('task_id').notNullable();
    t.text('user_id').notNullable();
    t.text('project_id');
    t.text('group_id');
    t.jsonb('requirements').notNullable();
    t.jsonb('preferences').notNullable();
    t.decimal('budget_usd', 14, 6);
    t.decimal('estimated_cost_usd', 14, 6).notNullable();
    t.jsonb('payload').notNullable();
    t.integer('priority').notNullable();
    t.integer('max_attempts').notNullable();
    t.integer('timeout_ms').notNullable();
    t.text('preferred_node_id');
    // queued → leased → succeeded | failed | dead_lettered | cancelled (leased → queued on retry)
    t.text('state').notNullable();
    t.integer('attempts').notNullable().defaultTo(0);
    t.timestamp('available_at', { useTz: true }).notNullable();
    t.uuid('lease_id');
    t.text('leased_by');
    t.timestamp('lease_expires_at', { useTz: true });
    t.timestamp('attempt_deadline', { useTz: true });
    t.jsonb('result');
    t.jsonb('error');
    t.text('submitted_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable();
    t.timestamp('finished_at', { useTz: true });
  });
  await knex.raw(`CREATE INDEX jobs_queue_idx ON jobs (priority DESC, available_at, created_at) WHERE state = 'queued'`);
  await knex.raw(`CREATE INDEX jobs_lease_expiry_idx ON jobs (lease_expires_at) WHERE state = 'leased'`);
  await knex.raw(`CREATE INDEX jobs_leased_by_idx ON jobs (leased_by) WHERE state = 'leased'`);

  await knex.schema.createTable('job_attempts', (t) => {
    t.uuid('lease_id').primary();
    t.uuid('job_id').notNullable().references('jobs.id');
    t.integer('attempt').notNullable();
    t.text('node_id').notNullable();
    t.text('decision_id').notNullable();
    t.timestamp('leased_at', { useTz: true }).notNullable();
    t.timestamp('ended_at', { useTz: true });
    // null while running; succeeded | failed | expired | cancelled | timed_out
    t.text('outcome');
    t.text('result_sha256');
    t.jsonb('answer');
    t.jsonb('error');
    t.index(['job_id', 'attempt']);
  });

  await knex.schema.createTable('job_decisions', (t) => {
    t.uuid('job_id').notNullable().references('jobs.id');
    t.text('node_id').notNullable();
    t.text('decision_id').notNullable();
    t.boolean('allow').notNullable();
    t.jsonb('reasons').notNullable();
    t.double('score').notNullable();
    t.text('revision');
    // The same worker skips a denied job until the policy inputs that do not change with
    // time could have changed (epoch) or a time-dependent reason could have lapsed.
    t.text('epoch').notNullable();
    t.timestamp('recheck_at', { useTz: true }).notNullable();
    t.timestamp('decided_at', { useTz: true }).notNullable();
    t.primary(['job_id', 'node_id']);
  });

  await knex.schema.createTable('idempotency_keys', (t) => {
    t.text('scope').notNullable();
    t.text('key').notNullable();
    t.text('request_sha256').notNullable();
    t.text('state').notNullable(); // in_flight | done
    t.integer('status');
    t.jsonb('response');
    t.timestamp('locked_until', { useTz: true }).notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable();
    t.primary(['scope', 'key']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('idempotency_keys');
  await knex.schema.dropTable('job_decisions');
  await knex.schema.dropTable('job_attempts');
  await knex.schema.dropTable('jobs');
}
