export { workerAuth } from './auth.js';
export { type CapabilityReport, parseCapabilityReport, reportDigest } from './capabilities.js';
export { createPskStore, type CreatedPsk, type PskInfo, type PskStore } from './psks.js';
export { PSK_HEADER, WORKER_ADMIN_ROUTES, WORKER_ROUTES, type WorkerRouteDeps } from './routes.js';
export { createWorkerService, type Registration, type WorkerService } from './service.js';
export { createFailureThrottle, type FailureThrottle } from './throttle.js';
export { createWorkerTokens, WORKER_AUDIENCE, WORKER_TOKEN_TYPE, type WorkerTokens } from './tokens.js';
export type { LeaseRef, LeaseStatus, RenewLeases, Worker } from './types.js';
