export { createMetrics, type Metrics } from './registry.js';
export { metricsRoutes } from './routes.js';
