import { ROLES } from '../server/roles.js';
import { defineRoutes } from '../server/route.js';
import type { Registry } from 'prom-client';

/** What `/metrics` needs: the registry, and a refresh of point-in-time gauges before each scrape. */
export interface MetricsRouteDeps {
  registry: Registry;
  beforeScrape: () => void | Promise<void>;
}

/** `GET /metrics` in the Prometheus text format, on every role. */
export const METRICS_ROUTES = defineRoutes<MetricsRouteDeps>([
  {
    method: 'get',
    path: '/metrics',
    roles: ROLES,
    access: 'public',
    summary: 'Prometheus metrics (text exposition format).',
    ok: { 200: { description: 'Metrics', mediaType: 'text/plain' } },
    errors: [],
    async handler(ctx, { registry, beforeScrape }) {
      await beforeScrape();
      ctx.type = registry.contentType;
      ctx.body = await registry.metrics();
    },
  },
]);
