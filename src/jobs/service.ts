import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { createBatcher } from '../lib/batcher.js';
import { isUuid } from '../lib/ids.js';
import type { Logger } from '../logging/index.js';
import { checkIdempotencyKey, idempotent, requestDigest, type StoredAnswer } from './idempotency.js';
import { type AttemptRow, iso, JOBS_CHANNEL, type JobRow, type JobState, num, TERMINAL_STATES } from './types.js';
import type { JobSpec } from './validate.js';
import { type JobWaker, noticeOrigin } from './wake.js';

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
  history: {
    attempt: number;
    lease_id: string;
    node_id: string;
    decision_id: string;
    leased_at: string | null;
    ended_at: string | null;
    outcome: string | null;
    error: unknown;
  }[];
  /** The last dispatch decision per node that considered the job, newest first. */
  decisions: {
    node_id: string;
    allow: boolean;
    reasons: string[];
    score: number;
    decision_id: string;
    revision: string | null;
    decided_at: string | null;
  }[];
}

/** The orchestrator's side of the queue. */
export interface JobService {
  /** Submits a job once per Idempotency-Key; 201 first, the same answer on replay. */
  submit(spec: JobSpec, idempotencyKey: string | undefined, submittedBy: string): Promise<StoredAnswer & { replayed: boolean }>;
  get(id: string): Promise<JobDetail>;
  list(filter: { state?: string; limit: number }): Promise<JobView[]>;
  cancel(id: string, by: string): Promise<JobView>;
}

/** What the job service needs: the database, the waker of long polls and whether to NOTIFY other replicas. */
export interface JobServiceDeps {
  knex: Knex;
  logger: Logger;
  waker: JobWaker;
  notify: boolean;
  now?: () => Date;
}

// Each job goes in with its idempotency key (already holding the answer) in one statement,
// the rows as one JSON parameter, then the channel, the notice's origin and whether to NOTIFY. A key that exists
// already inserts nothing, and neither does its job.
const INSERT_JOBS = `
  WITH v AS (
         SELECT * FROM jsonb_to_recordset(?::jsonb) AS v(
           scope text, key text, digest text, response jsonb, id uuid, task_id text, user_id text, project_id text, group_id text,
           requirements jsonb, preferences jsonb, budget_usd numeric, estimated_cost_usd numeric, payload jsonb, priority int,
           max_attempts int, timeout_ms int, preferred_node_id text, at timestamptz, submitted_by text)
       ), k AS (
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
       ), n AS (SELECT pg_notify(?, count(*)::text || ?) FROM j HAVING count(*) > 0 AND ?)
  SELECT id, (SELECT count(*) FROM n) AS notified FROM j`;

/** Throws job_not_found for anything that is not a job id. */
export function checkJobId(id: string): string {
  const shown = id.slice(0, 64);
  if (!isUuid(id)) throw new GatewayError('job_not_found', `no job with id '${shown}'`);
  return id;
}

/** A submission on its way to the group commit: its idempotency key, the job row and the answer. */
interface Submission {
  scope: string;
  key: string;
  digest: string;
  row: JobRow;
  view: JobView;
}

/** A row of `job_decisions`: the last dispatch decision of one node about one job. */
interface DecisionRow {
  node_id: string;
  allow: boolean;
  reasons: string[];
  score: number;
  decision_id: string;
  revision: string | null;
  decided_at: Date;
}

/**
 * Group-commits submissions (INSERT_JOBS), so a key and its job commit together or not at
 * all; resolves true for each job inserted. A key that exists already inserts nothing; its
 * request then replays or is refused.
 */
function createJobInserter(deps: JobServiceDeps) {
  return createBatcher<Submission, boolean>(async (items) => {
    const first = new Set<string>();
    const unique = items.filter((i) => !first.has(`${i.scope}\n${i.key}`) && first.add(`${i.scope}\n${i.key}`));
    const rows = unique.map(({ scope, key, digest, row: r, view }) => ({
      scope,
      key,
      digest,
      response: view,
      id: r.id,
      task_id: r.task_id,
      user_id: r.user_id,
      project_id: r.project_id,
      group_id: r.group_id,
      requirements: r.requirements,
      preferences: r.preferences,
      budget_usd: r.budget_usd,
      estimated_cost_usd: r.estimated_cost_usd,
      payload: r.payload,
      priority: r.priority,
      max_attempts: r.max_attempts,
      timeout_ms: r.timeout_ms,
      preferred_node_id: r.preferred_node_id,
      at: r.created_at,
      submitted_by: r.submitted_by,
    }));
    const { rows: inserted } = (await deps.knex.raw(INSERT_JOBS, [
      JSON.stringify(rows),
      JOBS_CHANNEL,
      noticeOrigin(deps.waker.origin),
      deps.notify,
    ])) as {
      rows: { id: string }[];
    };
    const ids = new Set(inserted.map((r) => r.id));
    // Only as many waiting polls as the new jobs need, not every poll (see the waker).
    if (ids.size > 0) deps.waker.wake(ids.size);
    return items.map((i) => ids.has(i.row.id));
  }, 256);
}

/** The row of a job just submitted: queued, available now, never attempted. */
function newJobRow(spec: JobSpec, submittedBy: string, at: Date): JobRow {
  return {
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
}

/**
 * Inside `trx`: cancels a job that has not ended (a cancelled one is returned as it is); a
 * leased job's attempt ends as cancelled. The lease id stays on the job, so the worker's next
 * heartbeat learns the job was cancelled.
 */
async function cancelJob(trx: Knex.Transaction, id: string, now: () => Date): Promise<JobRow> {
  const job = (await trx('jobs')
    .where({ id: checkJobId(id) })
    .forUpdate()
    .first()) as JobRow | undefined;
  if (!job) throw new GatewayError('job_not_found', `no job with id '${id}'`);
  if (job.state === 'cancelled') return job;
  if (TERMINAL_STATES.includes(job.state))
    throw new GatewayError('job_finished', `the job already ended as ${job.state}`, { state: job.state });
  const at = now();
  if (job.state === 'leased' && job.lease_id) {
    await trx('job_attempts').where({ lease_id: job.lease_id }).whereNull('outcome').update({ outcome: 'cancelled', ended_at: at });
  }
  const [updated] = (await trx('jobs')
    .where({ id: job.id })
    .update({ state: 'cancelled', updated_at: at, finished_at: at })
    .returning('*')) as JobRow[];
  return updated!;
}

/** Creates the orchestrator's side of the queue: submit, look up, list and cancel jobs. */
export function createJobService(deps: JobServiceDeps): JobService {
  const log = deps.logger.child({ component: 'jobs' });
  const now = deps.now ?? (() => new Date());
  const insertJobs = createJobInserter(deps);

  return {
    async submit(spec, idempotencyKey, submittedBy) {
      const scope = `jobs:${submittedBy}`;
      const key = checkIdempotencyKey(idempotencyKey);
      const digest = requestDigest(spec);
      const row = newJobRow(spec, submittedBy, now());
      const view = toView(row);
      if (await insertJobs.submit({ scope, key, digest, row, view })) {
        log.debug({ jobId: row.id, taskId: spec.task_id, by: submittedBy }, 'job submitted');
        return { status: 201, body: view, replayed: false };
      }
      // The key was there before: replay, refuse a different body, or say it is in flight.
      return idempotent(deps.knex, scope, key, spec, () => {
        throw new GatewayError('idempotency_in_flight', 'a request with this Idempotency-Key is in flight; retry shortly', {
          retry_after_s: 1,
        });
      });
    },

    async get(id) {
      const row = (await deps
        .knex('jobs')
        .where({ id: checkJobId(id) })
        .first()) as JobRow | undefined;
      if (!row) throw new GatewayError('job_not_found', `no job with id '${id}'`);
      const attempts = (await deps.knex('job_attempts').where({ job_id: row.id }).orderBy('attempt')) as AttemptRow[];
      const decisions = (await deps
        .knex('job_decisions')
        .where({ job_id: row.id })
        .orderBy('decided_at', 'desc')
        .limit(50)) as DecisionRow[];
      return toDetail(row, attempts, decisions);
    },

    async list({ state, limit }) {
      const q = deps.knex('jobs').select('*').orderBy('created_at', 'desc').limit(limit);
      if (state) q.where({ state });
      return ((await q) as JobRow[]).map(toView);
    },

    async cancel(id, by) {
      const row = await deps.knex.transaction((trx) => cancelJob(trx, id, now));
      log.info({ jobId: row.id, by }, 'job cancelled');
      return toView(row);
    },
  };
}

/** `GET /v1/jobs/{id}`: the job with its attempts and the last decision per node. */
function toDetail(row: JobRow, attempts: AttemptRow[], decisions: DecisionRow[]): JobDetail {
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
