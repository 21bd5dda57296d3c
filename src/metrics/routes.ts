import { ROLES } from '../server/roles.js';
import { defineRoutes } from '../server/route.js';
import type { Metrics } from './registry.js';

/** What `/metrics` needs: the registry, and a refresh of point-in-time gauges before each scrape. */
export interface MetricsRouteDeps {
  metrics: Metrics;
  beforeScrape: () => void | Promise<void>;
}

/** `GET /metrics` in the Prometheus text format, on every role. */
export const METRICS_ROUTES = defineRoutes<MetricsRouteDeps>([
  {
    method: 'get', path: '/metrics', roles: ROLES, access: 'public', summary: 'Prometheus metrics (text exposition format).',
    ok: { 200: { description: 'Metrics', mediaType: 'text/plain' } }, errors: [],
    async handler(ctx, { metrics, beforeScrape }) {
      await beforeScrape();
      ctx.type = metrics.registry.contentType;
      ctx.body = await metrics.registry.metrics();
    },
  },
]);
