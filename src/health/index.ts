export { HEALTH_ROUTES } from './routes.js';
export { createHealthService, type HealthService, type Readiness } from './service.js';
