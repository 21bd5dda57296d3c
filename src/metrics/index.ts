export { createMetrics, JOB_STATES, type Metrics, setJobCounts } from './registry.js';
export { METRICS_ROUTES, type MetricsRouteDeps } from './routes.js';
