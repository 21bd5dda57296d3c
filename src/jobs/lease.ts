import type { Knex } from 'knex';
import { errorMessage } from '../lib/error-message.js';
import { createLogThrottle } from '../lib/log-throttle.js';
import { startPeriodic } from '../lib/periodic.js';
import type { Logger } from '../logging/index.js';
import type { JobMetrics } from './metrics.js';
import type { LeaseRef, LeaseStatus, RenewLeases, Worker } from '../workers/types.js';
import { claimJobs, type DispatchDeps, type LeasedJob } from './dispatch.js';
import { reapLapsed } from './reap.js';
import { renewLeases } from './renew.js';
import { type RetryBackoff, wakeAt } from './requeue.js';
import type { ResultReport } from './types.js';
import { createResultHandler } from './result.js';
import type { JobWaker } from './wake.js';

/** The lease shapes the worker routes define, for the jobs routes and the composition root. */
export type { LeaseRef, LeaseStatus };

/** The Worker API's job half: poll, heartbeat leases, report results; plus the reaper. */
export interface LeaseService {
  poll(worker: Worker, req: { maxJobs?: number; waitMs: number; signal?: AbortSignal }): Promise<LeasedJob[]>;
  /** A heartbeat's leases: extended, or reported cancelled or lost (`POST /status`). */
  renew: RenewLeases;
  result(worker: Worker, report: ResultReport): Promise<unknown>;
  /** Requeues (or dead-letters) jobs whose lease lapsed; returns how many. */
  reap(): Promise<number>;
  startReaper(intervalMs: number): { stop(): void };
  /** Shutting down: waiting polls answer now, and no poll claims anything more. */
  close(): void;
}

/** What the lease service needs: the dispatch inputs, the database, the waker and the timings. */
export interface LeaseDeps extends DispatchDeps {
  knex: Knex;
  logger: Logger;
  waker: JobWaker;
  notify: boolean;
  longPollMaxMs: number;
  /**
   * Claims in flight at once. A claim holds a pooled connection across its decisions; polls
   * beyond this wait in memory, so the group commits of submissions and results (one
   * connection each) never queue behind a pool full of claims.
   */
  claimConcurrency: number;
  retry: RetryBackoff;
  metrics?: JobMetrics;
  now?: () => Date;
}

/** What a claim that was not made found. */
const nothing = async () => ({ leased: [] as LeasedJob[], leftAllowed: false });

/**
 * A long poll: claims what `worker` may take now, or waits (woken by new or requeued jobs,
 * or by the replica's queue watch) until something turns up, the wait is over, the request
 * goes away or the service closes.
 */
async function pollJobs(
  deps: LeaseDeps,
  claims: Limiter,
  now: () => Date,
  closed: () => boolean,
  worker: Worker,
  req: { maxJobs?: number; waitMs: number; signal?: AbortSignal },
): Promise<LeasedJob[]> {
  const waitMs = Math.min(Math.max(0, req.waitMs), deps.longPollMaxMs);
  const until = Date.now() + waitMs;
  const want = req.maxJobs ?? worker.capabilities.max_concurrency;
  for (;;) {
    // A wait that ended because the request went away claims nothing more.
    if (closed() || req.signal?.aborted) return [];
    const since = deps.waker.missed();
    // A poll whose worker went away while it waited its turn claims nothing either.
    const { leased: jobs, leftAllowed } = await claims.run(() =>
      closed() || req.signal?.aborted ? nothing() : deps.knex.transaction((trx) => claimJobs(trx, deps, worker, want, now())),
    );
    if (jobs.length > 0) deps.metrics?.leasedJobs.inc(jobs.length);
    deps.metrics?.claims.inc({ found: jobs.length > 0 ? 'jobs' : 'none' });
    // Jobs left that this worker could not take (denied, or no room): the next waiting
    // poll may. Finding nothing at all passes nothing on: someone else got there first.
    if (leftAllowed) deps.waker.wake(1);
    const left = until - Date.now();
    if (jobs.length > 0 || left <= 0 || req.signal?.aborted || closed()) return jobs;
    // A wait that ran out unwoken answers empty without another claim: nothing announced
    // work, and the queue watch wakes polls for what announcements miss.
    if (!(await deps.waker.wait(left, req.signal, { want, since }))) return [];
  }
}

/** Creates the lease service: long polls, heartbeats, results and the reaper of lapsed leases. */
export function createLeaseService(deps: LeaseDeps): LeaseService {
  const log = deps.logger.child({ component: 'leases' });
  const now = deps.now ?? (() => new Date());
  let closed = false;
  const result = createResultHandler(deps, now);
  const claims = createLimiter(deps.claimConcurrency);

  const reap = async () => {
    const at = now();
    const reaped = await deps.knex.transaction((trx) =>
      reapLapsed(trx, at, deps.retry, { notify: deps.notify, origin: deps.waker.origin }),
    );
    if (reaped.count > 0) {
      deps.metrics?.leaseExpiries.inc(reaped.count);
      wakeAt(deps.waker, reaped.latest, reaped.count);
      log.info({ count: reaped.count }, 'lapsed leases returned to the queue');
    }
    return reaped.count;
  };

  return {
    poll: (worker, req) => pollJobs(deps, claims, now, () => closed, worker, req),
    renew: (worker, leases) => renewLeases(deps.knex, deps.leaseTtlMs, now, worker, leases),
    result,
    reap,
    close() {
      closed = true;
      deps.waker.wake();
    },
    startReaper: (intervalMs) => {
      const failures = createLogThrottle(log);
      return startPeriodic(
        reap,
        intervalMs,
        (err) => failures.failure({ err: errorMessage(err) }, 'reaping lapsed leases failed; retrying'),
        () => failures.recovered('reaping lapsed leases works again'),
      );
    },
  };
}

/** Runs at most `limit` tasks at once; the others wait their turn, first come first served. */
interface Limiter {
  run<T>(task: () => Promise<T>): Promise<T>;
}

function createLimiter(limit: number): Limiter {
  let running = 0;
  const queue: (() => void)[] = [];
  const release = () => {
    const next = queue.shift();
    if (next) next();
    else running--;
  };
  return {
    async run(task) {
      if (running < limit) running++;
      else await new Promise<void>((resolve) => queue.push(resolve));
      try {
        return await task();
      } finally {
        release();
      }
    },
  };
}
