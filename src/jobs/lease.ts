import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { canonicalJson } from '../lib/canonical-json.js';
import type { Logger } from '../logging/index.js';
import type { JobMetrics } from './metrics.js';
import type { Worker } from '../workers/index.js';
import { createBatcher } from '../lib/batcher.js';
import { claimJobs, type DispatchDeps, type LeasedJob } from './dispatch.js';
import { type AttemptRow, iso, JOBS_CHANNEL, type JobRow } from './types.js';
import type { JobWaker } from './wake.js';

/** A lease a worker names in a heartbeat or a result. */
export interface LeaseRef {
  job_id: string;
  lease_id: string;
}

/** A worker's result for one lease (`POST /result`). */
export interface ResultReport extends LeaseRef {
  status: 'succeeded' | 'failed';
  result?: unknown;
  error?: { code: string; message: string; retryable: boolean };
}

/** What `POST /status` answers about the leases a worker named. */
export interface LeaseStatus {
  leases: { job_id: string; lease_id: string; lease_expires_at: string | null }[];
  cancelled: LeaseRef[];
  lost: (LeaseRef & { reason: 'expired' | 'reassigned' | 'finished' | 'unknown' })[];
}

/** The Worker API's job half: poll, heartbeat leases, report results; plus the reaper. */
export interface LeaseService {
  poll(worker: Worker, req: { maxJobs?: number; waitMs: number; signal?: AbortSignal }): Promise<LeasedJob[]>;
  renew(worker: Worker, leases: readonly LeaseRef[]): Promise<LeaseStatus>;
  result(worker: Worker, report: ResultReport): Promise<unknown>;
  /** Requeues (or dead-letters) jobs whose lease lapsed; returns how many. */
  reap(): Promise<number>;
  startReaper(intervalMs: number): { stop(): void };
  /** Shutting down: waiting polls answer now, and no poll claims anything more. */
  close(): void;
}

export interface LeaseDeps extends DispatchDeps {
  knex: Knex;
  logger: Logger;
  waker: JobWaker;
  notify: boolean;
  wakeFallbackMs: number;
  longPollMaxMs: number;
  retry: { baseMs: number; maxMs: number };
  metrics?: JobMetrics;
  now?: () => Date;
}

export function createLeaseService(deps: LeaseDeps): LeaseService {
  const log = deps.logger.child({ component: 'leases' });
  const now = deps.now ?? (() => new Date());
  const { knex } = deps;
  let closed = false;

  const claimOnce = (worker: Worker, maxJobs: number | undefined) =>
    knex.transaction((trx) => claimJobs(trx, deps, worker, maxJobs ?? worker.capabilities.max_concurrency, now()));
  const notifyRequeue = async (trx: Knex | Knex.Transaction, count = 1) => {
    if (deps.notify) await trx.raw('select pg_notify(?, ?)', [JOBS_CHANNEL, String(count)]);
  };
  /** Wakes `count` polls when a job requeued with backoff becomes available (here; other replicas poll). */
  const wakeAt = (availableAt: Date, count: number) => {
    const delay = availableAt.getTime() - Date.now();
    if (delay <= 0) deps.waker.wake(count);
    else setTimeout(() => deps.waker.wake(count), delay).unref();
  };
  /** Exponential backoff with jitter before attempt `attempts + 1`. */
  const backoffMs = (attempts: number) => {
    const ceiling = Math.min(deps.retry.maxMs, deps.retry.baseMs * 2 ** Math.max(0, attempts - 1));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  };

  // Many workers' successful results in one statement; each row keeps its own fence
  // (lease current, held by that worker, no result yet), so a batch never accepts what the
  // one-by-one path would refuse.
  const closeSucceeded = createBatcher<{ report: ResultReport; nodeId: string; digest: string; answer: object }, boolean>(async (items) => {
    const at = now();
    const bindings: Knex.RawBinding[] = [at]; // then the VALUES, then updated_at and ended_at
    // A lease twice in one batch (a worker repeating itself concurrently): only its first
    // result is tried here; the repeat goes the careful way and is replayed or refused.
    const first = new Set<string>();
    const unique = items.filter((i) => !first.has(i.report.lease_id) && first.add(i.report.lease_id));
    const values = unique
      .map(({ report, nodeId, digest, answer }) => {
        bindings.push(report.job_id, report.lease_id, nodeId, JSON.stringify(report.result ?? null), digest, JSON.stringify(answer));
        return '(?::uuid, ?::uuid, ?::text, ?::jsonb, ?::text, ?::jsonb)';
      })
      .join(', ');
    bindings.push(at, at);
    const { rows } = (await knex.raw(
      `WITH t AS (SELECT ?::timestamptz AS at), v(job_id, lease_id, node_id, result, digest, answer) AS (VALUES ${values}),
         u AS (
           UPDATE jobs j SET state = 'succeeded', result = v.result, error = NULL, finished_at = (SELECT at FROM t), updated_at = ?::timestamptz
             FROM v
            WHERE j.id = v.job_id AND j.lease_id = v.lease_id AND j.leased_by = v.node_id AND j.state = 'leased'
              AND EXISTS (SELECT 1 FROM job_attempts x WHERE x.lease_id = v.lease_id AND x.job_id = v.job_id AND x.result_sha256 IS NULL)
           RETURNING j.lease_id
         ), a AS (
           UPDATE job_attempts x SET outcome = 'succeeded', ended_at = ?::timestamptz, result_sha256 = v.digest, answer = v.answer
             FROM v JOIN u ON u.lease_id = v.lease_id
            WHERE x.lease_id = v.lease_id
           RETURNING x.lease_id
         )
       SELECT lease_id FROM a`,
      bindings,
    )) as { rows: { lease_id: string }[] };
    const closed = new Set(rows.map((r) => r.lease_id));
    return items.map((i) => unique.includes(i) && closed.has(i.report.lease_id));
  }, 256);

  const service: LeaseService = {
    async poll(worker, req) {
      const waitMs = Math.min(Math.max(0, req.waitMs), deps.longPollMaxMs);
      const until = Date.now() + waitMs;
      for (;;) {
        if (closed) return [];
        const { leased: jobs, leftAllowed } = await claimOnce(worker, req.maxJobs);
        if (jobs.length > 0) deps.metrics?.leasedJobs.inc(jobs.length);
        // Jobs left that this worker could not take (denied, or no room): the next waiting
        // poll may. Finding nothing at all passes nothing on: someone else got there first.
        if (leftAllowed) deps.waker.wake(1);
        const left = until - Date.now();
        if (jobs.length > 0 || left <= 0 || req.signal?.aborted || closed) return jobs;
        await deps.waker.wait(Math.min(left, deps.wakeFallbackMs), req.signal);
      }
    },

    async renew(worker, leases) {
      const answer: LeaseStatus = { leases: [], cancelled: [], lost: [] };
      if (leases.length === 0) return answer;
      const ids = leases.map((l) => l.lease_id);
      const attempts = (await knex('job_attempts').whereIn('lease_id', ids).select('lease_id', 'job_id', 'node_id')) as Pick<AttemptRow, 'lease_id' | 'job_id' | 'node_id'>[];
      const byLease = new Map(attempts.map((a) => [a.lease_id, a]));
      for (const l of leases) {
        const a = byLease.get(l.lease_id);
        if (a && (a.node_id !== worker.nodeId || a.job_id !== l.job_id)) {
          throw new GatewayError('job_not_owned', `lease '${l.lease_id}' is not a lease of this worker on job '${l.job_id}'`);
        }
      }
      const at = now();
      const extended = (await knex('jobs')
        .whereIn('lease_id', ids)
        .andWhere({ state: 'leased', leased_by: worker.nodeId })
        .update({ lease_expires_at: knex.raw('least(?::timestamptz, attempt_deadline)', [new Date(at.getTime() + deps.leaseTtlMs)]), updated_at: at })
        .returning(['id', 'lease_id', 'lease_expires_at'])) as Pick<JobRow, 'id' | 'lease_id' | 'lease_expires_at'>[];
      const renewed = new Set(extended.map((r) => r.lease_id));
      answer.leases = extended.map((r) => ({ job_id: r.id, lease_id: r.lease_id!, lease_expires_at: iso(r.lease_expires_at) }));
      const rest = leases.filter((l) => !renewed.has(l.lease_id));
      if (rest.length === 0) return answer;
      const jobs = (await knex('jobs').whereIn('id', rest.filter((l) => byLease.has(l.lease_id)).map((l) => l.job_id)).select('id', 'state', 'lease_id')) as Pick<JobRow, 'id' | 'state' | 'lease_id'>[];
      const byJob = new Map(jobs.map((j) => [j.id, j]));
      for (const l of rest) {
        const job = byLease.has(l.lease_id) ? byJob.get(l.job_id) : undefined;
        if (!job) answer.lost.push({ ...l, reason: 'unknown' });
        else if (job.state === 'cancelled' && job.lease_id === l.lease_id) answer.cancelled.push(l);
        else if (job.lease_id === l.lease_id) answer.lost.push({ ...l, reason: 'finished' });
        else if (job.state === 'leased') answer.lost.push({ ...l, reason: 'reassigned' });
        else answer.lost.push({ ...l, reason: job.state === 'queued' ? 'expired' : 'finished' });
      }
      return answer;
    },

    async result(worker, report) {
      const digest = createHash('sha256')
        .update(canonicalJson({ status: report.status, result: report.result ?? null, error: report.error ?? null }))
        .digest('hex');
      if (report.status === 'succeeded') {
        // The common case, group-committed: the lease is current and this worker's, so the
        // job and its attempt close together. Anything else takes the careful path below.
        const answer = { job_id: report.job_id, lease_id: report.lease_id, accepted: true, state: 'succeeded' };
        if (await closeSucceeded.submit({ report, nodeId: worker.nodeId, digest, answer })) {
          deps.metrics?.jobResults.inc({ state: 'succeeded' });
          return answer;
        }
      }
      const outcome = await knex.transaction(async (trx) => {
        const attempt = (await trx('job_attempts').where({ lease_id: report.lease_id }).forUpdate().first()) as AttemptRow | undefined;
        if (!attempt || attempt.job_id !== report.job_id) throw new GatewayError('job_not_found', 'no such lease of this job');
        if (attempt.node_id !== worker.nodeId) throw new GatewayError('job_not_owned', 'this lease belongs to another worker');
        if (attempt.result_sha256 !== null) {
          if (attempt.result_sha256 === digest) return { answer: attempt.answer, requeued: null, replay: true };
          throw new GatewayError('result_conflict', 'a different result was already accepted for this lease');
        }
        const job = (await trx('jobs').where({ id: report.job_id }).forUpdate().first()) as JobRow;
        if (job.lease_id !== report.lease_id) {
          throw new GatewayError('lease_superseded', 'this lease lapsed and the job was given to another lease; the result was not accepted', { state: job.state });
        }
        if (job.state === 'cancelled') throw new GatewayError('job_finished', 'the job was cancelled; the result was not accepted', { state: job.state });
        if (job.state !== 'leased') {
          throw new GatewayError('lease_superseded', 'this lease lapsed; the result was not accepted', { state: job.state });
        }
        const at = now();
        let patch: Partial<Record<keyof JobRow, unknown>>;
        if (report.status === 'succeeded') {
          patch = { state: 'succeeded', result: JSON.stringify(report.result ?? null), error: null, finished_at: at };
        } else if (report.error?.retryable && job.attempts < job.max_attempts) {
          patch = { state: 'queued', error: JSON.stringify(report.error), available_at: new Date(at.getTime() + backoffMs(job.attempts)), lease_id: null, leased_by: null, lease_expires_at: null };
        } else {
          patch = { state: report.error?.retryable ? 'dead_lettered' : 'failed', error: JSON.stringify(report.error ?? null), finished_at: at };
        }
        const answer = {
          job_id: job.id,
          lease_id: report.lease_id,
          accepted: true,
          state: patch.state,
          ...(patch.state === 'queued' && { next_attempt_at: iso(patch.available_at as Date) }),
        };
        await trx('jobs').where({ id: job.id }).update({ ...patch, updated_at: at });
        await trx('job_attempts').where({ lease_id: report.lease_id }).update({
          outcome: report.status,
          ended_at: at,
          result_sha256: digest,
          answer: JSON.stringify(answer),
          error: report.error ? JSON.stringify(report.error) : null,
        });
        if (patch.state === 'queued') await notifyRequeue(trx);
        return { answer, requeued: patch.state === 'queued' ? (patch.available_at as Date) : null, replay: false };
      });
      if (outcome.requeued) wakeAt(outcome.requeued, 1);
      if (!outcome.replay) deps.metrics?.jobResults.inc({ state: String((outcome.answer as { state: string }).state) });
      return outcome.answer;
    },

    async reap() {
      const at = now();
      const reaped = await knex.transaction(async (trx) => {
        const lapsed = (await trx('jobs')
          .where({ state: 'leased' })
          .andWhere('lease_expires_at', '<', at)
          .orderBy('lease_expires_at')
          .limit(500)
          .forUpdate()
          .skipLocked()
          .select('id', 'lease_id', 'attempts', 'max_attempts', 'attempt_deadline')) as Pick<JobRow, 'id' | 'lease_id' | 'attempts' | 'max_attempts' | 'attempt_deadline'>[];
        let latest = at;
        for (const job of lapsed) {
          const timedOut = job.attempt_deadline !== null && new Date(job.attempt_deadline) <= at;
          const error = { code: timedOut ? 'attempt_timed_out' : 'lease_expired', message: timedOut ? 'the attempt ran past the job timeout' : 'the worker stopped renewing its lease', retryable: true };
          await trx('job_attempts').where({ lease_id: job.lease_id! }).whereNull('outcome').update({ outcome: timedOut ? 'timed_out' : 'expired', ended_at: at, error: JSON.stringify(error) });
          const patch =
            job.attempts < job.max_attempts
              ? { state: 'queued', available_at: new Date(at.getTime() + backoffMs(job.attempts)), lease_id: null, leased_by: null, lease_expires_at: null }
              : { state: 'dead_lettered', finished_at: at };
          if ('available_at' in patch && patch.available_at && patch.available_at > latest) latest = patch.available_at;
          await trx('jobs').where({ id: job.id }).update({ ...patch, error: JSON.stringify(error), updated_at: at });
        }
        if (lapsed.length > 0) await notifyRequeue(trx, lapsed.length);
        return { count: lapsed.length, latest };
      });
      if (reaped.count > 0) {
        deps.metrics?.leaseExpiries.inc(reaped.count);
        wakeAt(reaped.latest, reaped.count);
        log.info({ count: reaped.count }, 'lapsed leases returned to the queue');
      }
      return reaped.count;
    },

    close() {
      closed = true;
      deps.waker.wake();
    },

    startReaper(intervalMs) {
      let running = false;
      const timer = setInterval(() => {
        if (running) return;
        running = true;
        service
          .reap()
          .catch((err: unknown) => log.warn({ err: String((err as Error)?.message ?? err) }, 'reaping lapsed leases failed; retrying'))
          .finally(() => (running = false));
      }, intervalMs);
      timer.unref();
      return { stop: () => clearInterval(timer) };
    },
  };
  return service;
}
