import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { createBatcher } from '../lib/batcher.js';
import type { Logger } from '../logging/index.js';
import { checkIdempotencyKey, idempotent, requestDigest, type StoredAnswer } from './idempotency.js';
import { type AttemptRow, iso, JOBS_CHANNEL, type JobRow, type JobState, num, TERMINAL_STATES } from './types.js';
import type { JobSpec } from './validate.js';
import type { JobWaker } from './wake.js';

/** A job as the orchestrator sees it (`GET /v1/jobs/{id}`). */
export interface JobView {
  id: string;
  state: JobState;
  task_id: string;
  user_id: string;
  project_id: string | null;
  group_id: string | null;
  requirements: unknown;
  preferences: unknown;
  budget_usd: number | null;
  estimated_cost_usd: number;
  priority: number;
  max_attempts: number;
  timeout_ms: number;
  preferred_node_id: string | null;
  attempts: number;
  available_at: string | null;
  lease: { lease_id: string; node_id: string; expires_at: string | null } | null;
  result: unknown;
  error: unknown;
  created_at: string | null;
  updated_at: string | null;
  finished_at: string | null;
}

/** `GET /v1/jobs/{id}`: the job, its attempts (its history) and why it waits. */
export interface JobDetail extends JobView {
  history: { attempt: number; lease_id: string; node_id: string; decision_id: string; leased_at: string | null; ended_at: string | null; outcome: string | null; error: unknown }[];
  /** The last dispatch decision per node that considered the job, newest first. */
  decisions: { node_id: string; allow: boolean; reasons: string[]; score: number; decision_id: string; revision: string | null; decided_at: string | null }[];
}

/** The orchestrator's side of the queue. */
export interface JobService {
  /** Submits a job once per Idempotency-Key; 201 first, the same answer on replay. */
  submit(spec: JobSpec, idempotencyKey: string | undefined, submittedBy: string): Promise<StoredAnswer & { replayed: boolean }>;
  get(id: string): Promise<JobDetail>;
  list(filter: { state?: string; limit: number }): Promise<JobView[]>;
  cancel(id: string, by: string): Promise<JobView>;
}

export interface JobServiceDeps {
  knex: Knex;
  logger: Logger;
  waker: JobWaker;
  notify: boolean;
  now?: () => Date;
}

/** Jobs a woken poll is expected to take; see the waker. */
const JOBS_PER_WAKE = 4;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Throws job_not_found for anything that is not a job id. */
export function checkJobId(id: string): string {
  if (!UUID.test(id)) throw new GatewayError('job_not_found', `no job with id '${id.slice(0, 64)}'`);
  return id;
}

export function createJobService(deps: JobServiceDeps): JobService {
  const log = deps.logger.child({ component: 'jobs' });
  const now = deps.now ?? (() => new Date());
  // Submissions group-committed: each job goes in with its idempotency key (already holding
  // the answer) in one statement, so a key and its job commit together or not at all. A key
  // that exists already inserts nothing; its request then replays or is refused.
  const insertJobs = createBatcher<{ scope: string; key: string; digest: string; row: JobRow; view: JobView }, boolean>(async (items) => {
    const first = new Set<string>();
    const unique = items.filter((i) => !first.has(`${i.scope}\n${i.key}`) && first.add(`${i.scope}\n${i.key}`));
    const bindings: Knex.RawBinding[] = [];
    const values = unique
      .map(({ scope, key, digest, row: r, view }) => {
        bindings.push(
          scope, key, digest, JSON.stringify(view), r.id, r.task_id, r.user_id, r.project_id, r.group_id,
          JSON.stringify(r.requirements), JSON.stringify(r.preferences), r.budget_usd, r.estimated_cost_usd, JSON.stringify(r.payload),
          r.priority, r.max_attempts, r.timeout_ms, r.preferred_node_id, r.created_at, r.submitted_by,
        );
        return `(?::text, ?::text, ?::text, ?::jsonb, ?::uuid, ?::text, ?::text, ?::text, ?::text, ?::jsonb, ?::jsonb, ?::numeric, ?::numeric,
                 ?::jsonb, ?::int, ?::int, ?::int, ?::text, ?::timestamptz, ?::text)`;
      })
      .join(', ');
    bindings.push(JOBS_CHANNEL, deps.notify);
    const { rows } = (await deps.knex.raw(
      `WITH v(scope, key, digest, response, id, task_id, user_id, project_id, group_id, requirements, preferences, budget_usd,
              estimated_cost_usd, payload, priority, max_attempts, timeout_ms, preferred_node_id, at, submitted_by) AS (VALUES ${values}),
         k AS (
           INSERT INTO idempotency_keys (scope, key, request_sha256, state, status, response, locked_until, created_at)
           SELECT scope, key, digest, 'done', 201, response, at, at FROM v
           ON CONFLICT (scope, key) DO NOTHING RETURNING scope, key
         ), j AS (
           INSERT INTO jobs (id, task_id, user_id, project_id, group_id, requirements, preferences, budget_usd, estimated_cost_usd,
                             payload, priority, max_attempts, timeout_ms, preferred_node_id, state, attempts, available_at,
                             submitted_by, created_at, updated_at)
           SELECT id, task_id, user_id, project_id, group_id, requirements, preferences, budget_usd, estimated_cost_usd,
                  payload, priority, max_attempts, timeout_ms, preferred_node_id, 'queued', 0, at, submitted_by, at, at
             FROM v JOIN k USING (scope, key)
           RETURNING id
         ), n AS (SELECT pg_notify(?, count(*)::text) FROM j HAVING count(*) > 0 AND ?)
       SELECT id, (SELECT count(*) FROM n) AS notified FROM j`,
      bindings,
    )) as { rows: { id: string }[] };
    const inserted = new Set(rows.map((r) => r.id));
    // A poll takes several jobs and wakes the next one when it leaves some: one waiter per
    // few jobs, not one per job, keeps fifty idle workers from racing for every submission.
    if (inserted.size > 0) deps.waker.wake(Math.ceil(inserted.size / JOBS_PER_WAKE));
    return items.map((i) => inserted.has(i.row.id));
  }, 256);
  const load = async (id: string, trx: Knex | Knex.Transaction = deps.knex) => {
    const row = (await trx('jobs').where({ id: checkJobId(id) }).first()) as JobRow | undefined;
    if (!row) throw new GatewayError('job_not_found', `no job with id '${id}'`);
    return row;
  };

  return {
    async submit(spec, idempotencyKey, submittedBy) {
      const scope = `jobs:${submittedBy}`;
      const key = checkIdempotencyKey(idempotencyKey);
      const digest = requestDigest(spec);
      const at = now();
      const row: JobRow = {
        id: randomUUID(),
        ...spec,
        state: 'queued',
        attempts: 0,
        available_at: at,
        lease_id: null,
        leased_by: null,
        lease_expires_at: null,
        attempt_deadline: null,
        result: null,
        error: null,
        submitted_by: submittedBy,
        created_at: at,
        updated_at: at,
        finished_at: null,
      };
      const view = toView(row);
      if (await insertJobs.submit({ scope, key, digest, row, view })) {
        log.debug({ jobId: row.id, taskId: spec.task_id, by: submittedBy }, 'job submitted');
        return { status: 201, body: view, replayed: false };
      }
      // The key was there before: replay, refuse a different body, or say it is in flight.
      return idempotent(deps.knex, scope, key, spec, () => {
        throw new GatewayError('idempotency_in_flight', 'a request with this Idempotency-Key is in flight; retry shortly', { retry_after_s: 1 });
      });
    },

    async get(id) {
      const row = await load(id);
      const attempts = (await deps.knex('job_attempts').where({ job_id: row.id }).orderBy('attempt')) as AttemptRow[];
      const decisions = (await deps.knex('job_decisions').where({ job_id: row.id }).orderBy('decided_at', 'desc').limit(50)) as {
        node_id: string;
        allow: boolean;
        reasons: string[];
        score: number;
        decision_id: string;
        revision: string | null;
        decided_at: Date;
      }[];
      return {
        ...toView(row),
        history: attempts.map((a) => ({
          attempt: a.attempt,
          lease_id: a.lease_id,
          node_id: a.node_id,
          decision_id: a.decision_id,
          leased_at: iso(a.leased_at),
          ended_at: iso(a.ended_at),
          outcome: a.outcome,
          error: a.error ?? null,
        })),
        decisions: decisions.map((d) => ({
          node_id: d.node_id,
          allow: d.allow,
          reasons: d.reasons,
          score: d.score,
          decision_id: d.decision_id,
          revision: d.revision,
          decided_at: iso(d.decided_at),
        })),
      };
    },

    async list({ state, limit }) {
      const q = deps.knex('jobs').select('*').orderBy('created_at', 'desc').limit(limit);
      if (state) q.where({ state });
      return ((await q) as JobRow[]).map(toView);
    },

    async cancel(id, by) {
      const row = await deps.knex.transaction(async (trx) => {
        const job = (await trx('jobs').where({ id: checkJobId(id) }).forUpdate().first()) as JobRow | undefined;
        if (!job) throw new GatewayError('job_not_found', `no job with id '${id}'`);
        if (job.state === 'cancelled') return job;
        if (TERMINAL_STATES.includes(job.state)) throw new GatewayError('job_finished', `the job already ended as ${job.state}`, { state: job.state });
        const at = now();
        if (job.state === 'leased' && job.lease_id) {
          await trx('job_attempts').where({ lease_id: job.lease_id }).whereNull('outcome').update({ outcome: 'cancelled', ended_at: at });
        }
        // The lease id stays, so the worker's next heartbeat learns the job was cancelled.
        const [updated] = (await trx('jobs').where({ id: job.id }).update({ state: 'cancelled', updated_at: at, finished_at: at }).returning('*')) as JobRow[];
        return updated!;
      });
      log.info({ jobId: row.id, by }, 'job cancelled');
      return toView(row);
    },
  };
}

/** The public shape of a job row. */
export function toView(r: JobRow): JobView {
  return {
    id: r.id,
    state: r.state,
    task_id: r.task_id,
    user_id: r.user_id,
    project_id: r.project_id,
    group_id: r.group_id,
    requirements: r.requirements,
    preferences: r.preferences,
    budget_usd: num(r.budget_usd),
    estimated_cost_usd: num(r.estimated_cost_usd) ?? 0,
    priority: r.priority,
    max_attempts: r.max_attempts,
    timeout_ms: r.timeout_ms,
    preferred_node_id: r.preferred_node_id,
    attempts: r.attempts,
    available_at: iso(r.available_at),
    lease: r.lease_id && r.leased_by ? { lease_id: r.lease_id, node_id: r.leased_by, expires_at: iso(r.lease_expires_at) } : null,
    result: r.result ?? null,
    error: r.error ?? null,
    created_at: iso(r.created_at),
    updated_at: iso(r.updated_at),
    finished_at: iso(r.finished_at),
  };
}
