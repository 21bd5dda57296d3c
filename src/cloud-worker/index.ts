export { ApiError, WorkerClient } from './client.js';
export { readWorkerConfig, type WorkerConfig, WorkerConfigError } from './config.js';
export { EXECUTORS, execute, type JobOutcome } from './executors.js';
export { type RunOptions, runWorker } from './runner.js';
