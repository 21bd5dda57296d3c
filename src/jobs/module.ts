import type { Core } from '../core/module.js';
import { createJobMetrics, setJobCounts } from './metrics.js';
import type { Lifecycle } from '../server/lifecycle.js';
import { bindRoutes, type BoundRoute } from '../server/route.js';
import { createLeaseService, type LeaseService } from './lease.js';
import { JOB_ADMIN_ROUTES, JOB_WORKER_ROUTES } from './routes.js';
import { createJobService, type JobService } from './service.js';
import { JOBS_CHANNEL } from './types.js';
import { createJobWaker, type JobWaker, onJobsNotice } from './wake.js';
import { startQueueWatch } from './watch.js';

/** The job queue as the gateway runs it: submission, leasing with the dispatch policy, the lease reaper. */
export interface JobsModule {
  waker: JobWaker;
  jobs: JobService;
  leases: LeaseService;
  routes: BoundRoute[];
  /** Sets the queue-depth gauge from the database; no series while the database is down. */
  refreshGauges(): Promise<void>;
}

/**
 * Starts the queue. Long polls wait on an in-process waker, woken by submissions and requeues
 * here, by NOTIFY from other replicas, by any change of the runtime data a denied job's
 * dispatch decision depended on, and by the queue watch for anything those missed.
 */
export function startJobs(core: Core, life: Lifecycle): JobsModule {
  const { config, db, logger } = core;
  const waker = createJobWaker();
  const metrics = createJobMetrics(core.registry, () => waker.waiting());
  core.runtime.onChange(() => waker.wake());
  life.add('job waker', () => waker.wake());
  const jobs = createJobService({ knex: db.knex, logger, waker, notify: core.notify });
  const leases = createLeaseService({
    knex: db.knex,
    logger,
    waker,
    notify: core.notify,
    decisions: core.decisions,
    preferences: core.runtime.preferences,
    epoch: core.runtime.epoch,
    metrics,
    leaseTtlMs: config.jobs.leaseTtlMs,
    candidates: config.jobs.claimCandidates,
    longPollMaxMs: config.jobs.longPollMaxMs,
    // Room in the pool for the group commits and everything else, whatever its size.
    claimConcurrency: Math.max(1, Math.floor(config.database.poolMax / 2)),
    retry: { baseMs: config.jobs.retryBaseMs, maxMs: config.jobs.retryMaxMs },
  });
  core.listener.on(JOBS_CHANNEL, (payload) => onJobsNotice(waker, payload));
  const reaper = leases.startReaper(config.jobs.reaperIntervalMs);
  life.add('lease reaper', () => reaper.stop());
  const watch = startQueueWatch({ knex: db.knex, waker, logger, intervalMs: config.jobs.wakeFallbackMs });
  life.add('queue watch', () => watch.stop());
  const defaults = { maxAttempts: config.jobs.defaultMaxAttempts, timeoutMs: config.jobs.defaultTimeoutMs };
  return {
    waker,
    jobs,
    leases,
    routes: [...bindRoutes(JOB_ADMIN_ROUTES, { jobs, defaults }), ...bindRoutes(JOB_WORKER_ROUTES, leases)],
    async refreshGauges() {
      const counts = (await db
        .knex('jobs')
        .select('state')
        .count({ n: '*' })
        .groupBy('state')
        .catch(() => null)) as { state: string; n: string }[] | null;
      if (counts) setJobCounts(metrics, counts);
      else metrics.jobsByState.reset(); // unknown while the database is down: no series rather than zeros
    },
  };
}
