import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { DecisionService } from '../decisions/index.js';
import { ENTRYPOINTS } from '../policy/index.js';
import type { PreferencesService } from '../preferences/index.js';
import type { Worker } from '../workers/index.js';
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

export interface DispatchDeps {
  decisions: DecisionService;
  preferences: PreferencesService;
  /** Identifies every input of a dispatch decision that is the same for all jobs: bundle, settings, preferences. */
  epoch: () => string;
  leaseTtlMs: number;
  candidates: number;
}

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
export async function claimJobs(trx: Knex.Transaction, deps: DispatchDeps, worker: Worker, active: number, free: number, at: Date): Promise<LeasedJob[]> {
  const epoch = `${deps.epoch()}:${worker.capabilitiesSha256.slice(0, 16)}`;
  let limit = Math.min(deps.candidates, Math.max(free * 2, 4));
  const leased: LeasedJob[] = [];
  const seen: string[] = [];
  // Jobs this worker may not take must not hide the ones it may: when a batch of candidates
  // yields too little, look further down the queue (denied jobs are skipped from then on).
  for (let round = 0; round < MAX_ROUNDS && leased.length < free; round++) {
    const { rows } = (await trx.raw(
      `SELECT j.* FROM jobs j
        WHERE j.state = 'queued' AND j.available_at <= ? AND NOT (j.id = ANY(?::uuid[]))
          AND NOT EXISTS (SELECT 1 FROM job_decisions d
                           WHERE d.job_id = j.id AND d.node_id = ? AND NOT d.allow AND d.epoch = ? AND d.recheck_at > ?)
        ORDER BY j.priority DESC, j.available_at, j.created_at
        LIMIT ? FOR UPDATE OF j SKIP LOCKED`,
      [at, seen, worker.nodeId, epoch, at, limit],
    )) as { rows: JobRow[] };
    if (rows.length === 0) break;
    seen.push(...rows.map((j) => j.id));
    leased.push(...(await decideAndLease(trx, deps, worker, rows, active + leased.length, free - leased.length, epoch, at)));
    if (rows.length < limit) break;
    limit = Math.min(limit * 2, MAX_CANDIDATES);
  }
  return leased;
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
): Promise<LeasedJob[]> {
  const evaluated = [];
  for (const job of rows) {
    const preferences = deps.preferences.resolve({ groupId: job.group_id, userId: job.user_id, projectId: job.project_id, task: job.preferences });
    const input = dispatchInput(job, worker, active, preferences, at);
    const record = await deps.decisions.decide(ENTRYPOINTS.dispatch, input, `node:${worker.nodeId}`);
    const score = typeof record.decision.score === 'number' ? record.decision.score : 0;
    evaluated.push({ job, record, score, preferences });
  }
  const chosen = evaluated
    .filter((e) => e.record.decision.allow)
    .sort((a, b) => b.job.priority - a.job.priority || b.score - a.score)
    .slice(0, free);

  const leased: LeasedJob[] = [];
  for (const { job, record } of chosen) {
    const leaseId = randomUUID();
    const deadline = new Date(at.getTime() + job.timeout_ms);
    const expires = new Date(Math.min(at.getTime() + deps.leaseTtlMs, deadline.getTime()));
    await trx('jobs').where({ id: job.id }).update({
      state: 'leased',
      lease_id: leaseId,
      leased_by: worker.nodeId,
      lease_expires_at: expires,
      attempt_deadline: deadline,
      attempts: job.attempts + 1,
      updated_at: at,
    });
    await trx('job_attempts').insert({ lease_id: leaseId, job_id: job.id, attempt: job.attempts + 1, node_id: worker.nodeId, decision_id: record.decisionId, leased_at: at });
    leased.push({
      job_id: job.id,
      lease_id: leaseId,
      attempt: job.attempts + 1,
      task_id: job.task_id,
      payload: job.payload,
      requirements: job.requirements,
      lease_expires_at: iso(expires),
      deadline: iso(deadline),
      decision_id: record.decisionId,
    });
  }

  await trx('job_decisions')
    .insert(
      evaluated.map(({ job, record, score, preferences }) => ({
        job_id: job.id,
        node_id: worker.nodeId,
        decision_id: record.decisionId,
        allow: record.decision.allow,
        reasons: JSON.stringify(record.decision.reasons),
        score,
        revision: record.revision,
        epoch,
        recheck_at: recheckAt(record.decision.reasons, job, preferences, at),
        decided_at: at,
      })),
    )
    .onConflict(['job_id', 'node_id'])
    .merge();
  return leased;
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
