export { createRegistry } from './registry.js';
export { METRICS_ROUTES, type MetricsRouteDeps } from './routes.js';
