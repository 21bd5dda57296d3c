export { createRegistry } from './registry.js';
export { METRICS_ROUTES, metricsAuthenticator, type MetricsRouteDeps } from './routes.js';
