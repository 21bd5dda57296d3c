import type { Core } from '../core/module.js';
import type { Authenticators } from '../server/app.js';
import { bindRoutes, type BoundRoute } from '../server/route.js';
import { workerAuth } from './auth.js';
import { createPskStore, type PskStore } from './psks.js';
import { WORKER_ADMIN_ROUTES, WORKER_ROUTES, type WorkerRouteDeps } from './routes.js';
import { createWorkerService, type WorkerService } from './service.js';
import { createFailureThrottle } from './throttle.js';
import { createWorkerTokens } from './tokens.js';

/** The Worker API's identity half as the gateway runs it: PSKs, registration, sessions, heartbeats. */
export interface WorkersModule {
  psks: PskStore;
  workers: WorkerService;
  routes: BoundRoute[];
  authenticators: Pick<Authenticators, 'worker' | 'psk'>;
}

/** Builds the worker registry; heartbeats renew leases through `leases` (the job queue's). */
export function startWorkers(core: Core, leases: Pick<WorkerRouteDeps, 'renew' | 'parseLeases'>): WorkersModule {
  const { config, db, logger } = core;
  const psks = createPskStore(db.knex);
  const tokens = createWorkerTokens({ keys: core.keys, issuer: config.auth.issuer, ttlMs: config.auth.workerTokenTtlMs });
  const intervals = { ...config.workers, leaseTtlMs: config.jobs.leaseTtlMs };
  const workers = createWorkerService({
    knex: db.knex,
    logger,
    psks,
    tokens,
    throttle: createFailureThrottle(db.knex, config.auth.pskFailureLimit, config.auth.pskFailureWindowMs),
    decisions: core.decisions,
    intervals,
  });
  return {
    psks,
    workers,
    routes: [...bindRoutes(WORKER_ROUTES, { workers, ...leases, intervals }), ...bindRoutes(WORKER_ADMIN_ROUTES, { workers, psks })],
    // Registration checks the PSK itself: in turn per source address, so a burst of guesses gets no more than the limit.
    authenticators: { worker: workerAuth(workers), psk: async (_ctx, next) => next() },
  };
}
