export { createMetrics, JOB_STATES, type Metrics, setJobCounts } from './registry.js';
export { metricsRoutes } from './routes.js';
