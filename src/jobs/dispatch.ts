import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { DecisionService } from '../decisions/index.js';
import { ENTRYPOINTS } from '../policy/index.js';
import type { PreferencesService } from '../preferences/index.js';
import type { Worker } from '../workers/types.js';
import { iso, type JobRow, num } from './types.js';

/** A job handed to a worker by a poll. */
export interface LeasedJob {
  job_id: string;
  lease_id: string;
  attempt: number;
  task_id: string;
  payload: Record<string, unknown>;
  requirements: unknown;
  lease_expires_at: string | null;
  deadline: string | null;
  decision_id: string;
}

/** Reasons whose truth changes with time alone; a job denied for them is asked about again soon. */
const TRANSIENT = new Set(['worker_at_capacity', 'locality_wait']);
/** Batches of candidates one poll looks through before it answers with what it found. */
const MAX_ROUNDS = 8;
/** The widest batch a later round locks. */
const MAX_CANDIDATES = 256;
/** Even a stable deny is asked again after this long (a safety net under the epoch). */
const STABLE_RECHECK_MS = 60_000;
/**
 * Candidates beyond what a poll can take, as a share of it (at least one): enough for the
 * score to choose among, few enough that most decisions end in a lease. Every candidate
 * left behind is decided again by the next poll that locks it, so twice the free room
 * cost two decisions (and two decision-log rows) per job under load.
 */
const SLACK_SHARE = 4;

/** What a claim needs: the decision log, the preferences, the epoch of dispatch inputs, and the lease timing. */
export interface DispatchDeps {
  decisions: DecisionService;
  preferences: PreferencesService;
  /** Identifies every input of a dispatch decision that is the same for all jobs: bundle, settings, preferences. */
  epoch: () => string;
  leaseTtlMs: number;
  candidates: number;
}

/**
 * One statement writes a claim's leases, their attempts and every decision, so each claim
 * costs one round trip: the job rows are already locked by the claim. Two JSON parameters:
 * the leases, then the decisions of the jobs left waiting (either list may be empty).
 * The planner takes any JSON list for 100 rows, and against a table of a few thousand jobs
 * it would rather scan the table for 100 rows than look each up; the `= ANY(ARRAY(...))`
 * conditions make the jobs and decisions written reachable by their keys alone.
 */
export const WRITE_CLAIM = `
  WITH l AS (
         SELECT * FROM jsonb_to_recordset(?::jsonb)
           AS l(job_id uuid, lease_id uuid, attempt int, lease_expires_at timestamptz, deadline timestamptz, decision_id text, node_id text, at timestamptz)
       ), u AS (
         UPDATE jobs j SET state = 'leased', lease_id = l.lease_id, leased_by = l.node_id, lease_expires_at = l.lease_expires_at,
                           attempt_deadline = l.deadline, attempts = j.attempts + 1, updated_at = l.at
           FROM l WHERE j.id = ANY (ARRAY(SELECT job_id FROM l)) AND j.id = l.job_id
         RETURNING j.id
       ), a AS (
         INSERT INTO job_attempts (lease_id, job_id, attempt, node_id, decision_id, leased_at)
         SELECT lease_id, job_id, attempt, node_id, decision_id, at FROM l
         RETURNING lease_id
       ), x AS (
         -- An earlier deny by this node for a job it now leases no longer says anything.
         DELETE FROM job_decisions o USING l
           WHERE o.job_id = ANY (ARRAY(SELECT job_id FROM l)) AND o.node_id = l.node_id AND o.job_id = l.job_id
       ), d AS (
         INSERT INTO job_decisions (job_id, node_id, decision_id, allow, reasons, score, revision, epoch, recheck_at, decided_at)
         SELECT job_id, node_id, decision_id, allow, reasons, score, revision, epoch, recheck_at, at
           FROM jsonb_to_recordset(?::jsonb)
             AS d(job_id uuid, node_id text, decision_id text, allow boolean, reasons jsonb, score double precision, revision text,
                  epoch text, recheck_at timestamptz, at timestamptz)
         ON CONFLICT (job_id, node_id) DO UPDATE SET decision_id = excluded.decision_id, allow = excluded.allow, reasons = excluded.reasons,
           score = excluded.score, revision = excluded.revision, epoch = excluded.epoch, recheck_at = excluded.recheck_at,
           decided_at = excluded.decided_at
         RETURNING job_id
       )
  SELECT (SELECT count(*) FROM u)::int AS u, (SELECT count(*) FROM a)::int AS a`;

/** The `dispatch` policy input for one job and one worker (docs/policy-input.md). */
export function dispatchInput(job: JobRow, worker: Worker, activeJobs: number, preferences: Record<string, unknown>, at: Date) {
  return {
    action: 'dispatch',
    subject: worker.capabilities,
    resource: {
      job_id: job.id,
      task_id: job.task_id,
      priority: job.priority,
      requirements: job.requirements,
      estimated_cost_usd: num(job.estimated_cost_usd) ?? 0,
      budget_usd: num(job.budget_usd),
      preferred_node_id: job.preferred_node_id,
    },
    context: {
      user_id: job.user_id,
      project_id: job.project_id,
      group_id: job.group_id,
      preferences,
      load: { active_jobs: activeJobs, max_concurrency: worker.capabilities.max_concurrency },
      locality: { waited_ms: Math.max(0, at.getTime() - new Date(job.available_at).getTime()) },
      time: at.toISOString(),
    },
  };
}

/**
 * Claims up to `free` jobs for `worker` inside `trx`: locks a bounded set of queued
 * candidates (FOR UPDATE SKIP LOCKED, so concurrent polls never see the same row), asks the
 * dispatch policy about each (every decision recorded), leases the best-scored allowed ones
 * and remembers every decision per job and node so `GET /v1/jobs/{id}` can say why a job waits.
 */
export async function claimJobs(
  trx: Knex.Transaction,
  deps: DispatchDeps,
  worker: Worker,
  maxJobs: number,
  at: Date,
): Promise<{ leased: LeasedJob[]; leftAllowed: boolean }> {
  const epoch = `${deps.epoch()}:${worker.capabilitiesSha256.slice(0, 16)}`;
  const room = Math.min(maxJobs, worker.capabilities.max_concurrency);
  let limit = Math.min(deps.candidates, room + Math.ceil(room / SLACK_SHARE));
  const leased: LeasedJob[] = [];
  const seen: string[] = [];
  let active: number | undefined;
  let leftAllowed = false;
  // Jobs this worker may not take must not hide the ones it may: when a batch of candidates
  // yields too little, look further down the queue (denied jobs are skipped from then on).
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const { rows } = (await trx.raw(
      `SELECT j.*, (SELECT count(*) FROM jobs l WHERE l.state = 'leased' AND l.leased_by = ?)::int AS active_count
         FROM jobs j
        WHERE j.state = 'queued' AND j.available_at <= ? AND NOT (j.id = ANY(?::uuid[]))
          AND NOT EXISTS (SELECT 1 FROM job_decisions d
                           WHERE d.job_id = j.id AND d.node_id = ? AND NOT d.allow AND d.epoch = ? AND d.recheck_at > ?)
        ORDER BY j.priority DESC, j.available_at, j.created_at
        LIMIT ? FOR UPDATE OF j SKIP LOCKED`,
      [worker.nodeId, at, seen, worker.nodeId, epoch, at, limit],
    )) as { rows: (JobRow & { active_count: number })[] };
    if (rows.length === 0) break;
    // The worker's current load, as this transaction sees it (its own leases included).
    active ??= rows[0]!.active_count;
    const want = Math.min(maxJobs, worker.capabilities.max_concurrency - active);
    if (want - leased.length <= 0) break;
    seen.push(...rows.map((j) => j.id));
    const batch = await decideAndLease(trx, deps, worker, rows, active + leased.length, want - leased.length, epoch, at);
    leased.push(...batch.leased);
    // Allowed jobs left behind, or a full batch that may hide more: another poll should look.
    leftAllowed ||= batch.leftAllowed || (rows.length === limit && leased.length >= want);
    if (rows.length < limit || leased.length >= want) break;
    limit = Math.min(limit * 2, MAX_CANDIDATES);
  }
  // Candidates seen and none leased: they are for other workers; another poll should look.
  return { leased, leftAllowed: leftAllowed || (seen.length > 0 && leased.length === 0) };
}

/** Asks the dispatch policy about each candidate, leases the best allowed ones, remembers every decision. */
async function decideAndLease(
  trx: Knex.Transaction,
  deps: DispatchDeps,
  worker: Worker,
  rows: JobRow[],
  active: number,
  free: number,
  epoch: string,
  at: Date,
): Promise<{ leased: LeasedJob[]; leftAllowed: boolean }> {
  const evaluated = [];
  for (const job of rows) {
    const preferences = deps.preferences.resolve({
      groupId: job.group_id,
      userId: job.user_id,
      projectId: job.project_id,
      task: job.preferences,
    });
    const input = dispatchInput(job, worker, active, preferences, at);
    const record = await deps.decisions.decide(ENTRYPOINTS.dispatch, input, `node:${worker.nodeId}`);
    const score = typeof record.decision.score === 'number' ? record.decision.score : 0;
    evaluated.push({ job, record, score, preferences });
  }
  const allowed = evaluated.filter((e) => e.record.decision.allow).sort((a, b) => b.job.priority - a.job.priority || b.score - a.score);
  const chosen = allowed.slice(0, free);

  const leased: LeasedJob[] = chosen.map(({ job, record }) => {
    const deadline = new Date(at.getTime() + job.timeout_ms);
    return {
      job_id: job.id,
      lease_id: randomUUID(),
      attempt: job.attempts + 1,
      task_id: job.task_id,
      payload: job.payload,
      requirements: job.requirements,
      lease_expires_at: iso(new Date(Math.min(at.getTime() + deps.leaseTtlMs, deadline.getTime()))),
      deadline: iso(deadline),
      decision_id: record.decisionId,
    };
  });

  // A leased job's decision lives with its attempt (decision_id); the others are kept per
  // job and node to say why the job waits.
  const leasedIds = new Set(leased.map((l) => l.job_id));
  const waiting = evaluated.filter((e) => !leasedIds.has(e.job.id));
  if (leased.length === 0 && waiting.length === 0) return { leased, leftAllowed: false };
  const leaseRows = leased.map(({ job_id, lease_id, attempt, lease_expires_at, deadline, decision_id }) => ({
    job_id,
    lease_id,
    attempt,
    lease_expires_at,
    deadline,
    decision_id,
    node_id: worker.nodeId,
    at,
  }));
  const decisionRows = waiting.map(({ job, record, score, preferences }) => ({
    job_id: job.id,
    node_id: worker.nodeId,
    decision_id: record.decisionId,
    allow: record.decision.allow,
    reasons: record.decision.reasons,
    score,
    revision: record.revision,
    epoch,
    recheck_at: recheckAt(record.decision.reasons, job, preferences, at),
    at,
  }));
  const { rows: written } = (await trx.raw(WRITE_CLAIM, [JSON.stringify(leaseRows), JSON.stringify(decisionRows)])) as {
    rows: { u: number; a: number }[];
  };
  if (written[0]!.u !== leased.length || written[0]!.a !== leased.length) throw new Error('lease write did not cover the claimed jobs');
  return { leased, leftAllowed: allowed.length > chosen.length };
}

function recheckAt(reasons: readonly string[], job: JobRow, preferences: Record<string, unknown>, at: Date): Date {
  if (reasons.includes('worker_at_capacity')) return at;
  if (reasons.includes('locality_wait')) {
    const wait = typeof preferences.locality_max_wait_ms === 'number' ? preferences.locality_max_wait_ms : 0;
    return new Date(new Date(job.available_at).getTime() + wait);
  }
  if (reasons.some((r) => TRANSIENT.has(r))) return at;
  return new Date(at.getTime() + STABLE_RECHECK_MS);
}
