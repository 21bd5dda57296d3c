import type { Knex } from 'knex';
import type { Core } from '../core/module.js';
import { errorMessage } from '../lib/error-message.js';
import { createLogThrottle } from '../lib/log-throttle.js';
import { startPeriodic } from '../lib/periodic.js';
import type { Authenticators } from '../server/app.js';
import type { Lifecycle } from '../server/lifecycle.js';
import { bindRoutes, type BoundRoute } from '../server/route.js';
import { workerAuth } from './auth.js';
import { createWorkerAudit, type WorkerAuditEvent } from './audit.js';
import type { ChainedLog } from '../lib/chained-log.js';
import { createWorkerMetrics } from './metrics.js';
import { createPskStore, type PskStore } from './psks.js';
import { createQuarantineService, type QuarantineService } from './quarantine.js';
import { createQuarantineSet, type QuarantineSet, WORKERS_CHANNEL } from './quarantine-set.js';
import { WORKER_ADMIN_ROUTES, WORKER_ROUTES, type WorkerRouteDeps } from './routes.js';
import { createWorkerService, type WorkerService } from './service.js';
import { createFailureThrottle } from './throttle.js';
import { createWorkerTokens } from './tokens.js';

/** The Worker API's identity half as the gateway runs it: PSKs, registration, sessions, heartbeats, quarantine. */
export interface WorkersModule {
  psks: PskStore;
  workers: WorkerService;
  quarantine: QuarantineService;
  /** The hash-chained trail of quarantines and releases. */
  audit: ChainedLog<WorkerAuditEvent>;
  routes: BoundRoute[];
  authenticators: Pick<Authenticators, 'worker' | 'psk'>;
}

/** What the workers module takes from the job queue: lease renewal for heartbeats, lease release for ended sessions. */
export interface WorkerLeaseHooks extends Pick<WorkerRouteDeps, 'renew' | 'parseLeases'> {
  /** Requeues at once the jobs these node ids hold; answers how many. */
  releaseLeases: (nodeIds: readonly string[]) => Promise<number>;
}

/**
 * Builds the worker registry; heartbeats renew leases through `leases` (the job queue's).
 * Quarantined node ids live in an in-memory set on every replica (NOTIFY on the workers
 * channel, and a poll that also requeues any lease a quarantined node still holds).
 */
export function startWorkers(core: Core, leases: WorkerLeaseHooks, life: Lifecycle): WorkersModule {
  const { config, db, logger } = core;
  const psks = createPskStore(db.knex);
  const tokens = createWorkerTokens({ keys: core.keys, issuer: config.auth.issuer, ttlMs: config.auth.workerTokenTtlMs });
  const intervals = { ...config.workers, leaseTtlMs: config.jobs.leaseTtlMs };
  const quarantined = createQuarantineSet(db.knex);
  const announce = async (trx: Knex | Knex.Transaction, event: string) => {
    if (core.notify) await trx.raw('select pg_notify(?, ?)', [WORKERS_CHANNEL, event]);
  };
  const workers = createWorkerService({
    knex: db.knex,
    logger,
    psks,
    tokens,
    throttle: createFailureThrottle(db.knex, config.auth.pskFailureLimit, config.auth.pskFailureWindowMs),
    decisions: core.decisions,
    intervals,
    quarantined,
    releaseLeases: leases.releaseLeases,
    announce,
  });
  const audit = createWorkerAudit(db.knex, logger, config.audit);
  life.add('worker audit', () => audit.close());
  const quarantine = createQuarantineService({
    knex: db.knex,
    logger,
    quarantined,
    releaseLeases: leases.releaseLeases,
    announce,
    audit,
    forget: (nodeId) => workers.forget(nodeId),
  });
  createWorkerMetrics(core.registry, () => quarantined.size());
  const sweep = startQuarantineSweep(core, quarantined, leases.releaseLeases);
  sweep.run();
  life.add('quarantine sweep', () => sweep.stop());
  // Quarantines, releases and ended sessions from other replicas.
  core.listener.on(WORKERS_CHANNEL, (payload) => onWorkersEvent(payload, quarantined, workers, () => sweep.run()));
  return {
    psks,
    workers,
    quarantine,
    audit,
    routes: [
      ...bindRoutes(WORKER_ROUTES, { workers, ...leases, intervals }),
      ...bindRoutes(WORKER_ADMIN_ROUTES, { workers, psks, quarantine }),
    ],
    // Registration checks the PSK itself: in turn per source address, so a burst of guesses gets no more than the limit.
    authenticators: { worker: workerAuth(workers), psk: async (_ctx, next) => next() },
  };
}

/** Applies a workers-channel event; none (the listener reconnected) reloads the whole set. */
function onWorkersEvent(payload: string | undefined, quarantined: QuarantineSet, workers: WorkerService, reload: () => void): void {
  const [event, nodeId] = payload ? [payload.slice(0, payload.indexOf(':')), payload.slice(payload.indexOf(':') + 1)] : [];
  if (!event || !nodeId) return reload();
  if (event === 'quarantine') quarantined.add(nodeId);
  if (event === 'release') quarantined.delete(nodeId);
  workers.forget(nodeId);
}

/**
 * Every `workers.quarantinePollMs`: reloads the set (the fallback when a NOTIFY is missed)
 * and requeues any lease a quarantined node still holds, such as one a long poll that began
 * before the quarantine claimed afterwards.
 */
function startQuarantineSweep(core: Core, quarantined: QuarantineSet, releaseLeases: WorkerLeaseHooks['releaseLeases']) {
  const log = core.logger.child({ component: 'quarantine' });
  const pass = async () => {
    const ids = await quarantined.refresh();
    if (ids.length > 0) await releaseLeases(ids);
  };
  const failures = createLogThrottle(log);
  const warn = (err: unknown) => failures.failure({ err: errorMessage(err) }, 'quarantine refresh failed; retrying');
  const recovered = () => failures.recovered('quarantine refresh works again');
  const periodic = startPeriodic(pass, core.config.workers.quarantinePollMs, warn, recovered);
  return { stop: () => periodic.stop(), run: () => void pass().then(recovered, warn) };
}
