import type { Middleware } from 'koa';
import { bearerAuth } from '../auth/index.js';
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
    access: 'metrics',
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

/**
 * The `metrics` access kind: with no `auth.metricsToken`, everyone passes (a Prometheus scrape
 * config needs no secret by default); with one, `Authorization: Bearer` must carry it or the
 * admin token, else 401.
 */
export function metricsAuthenticator(metricsToken: string | null, adminToken: string): Middleware {
  if (metricsToken === null) return (_ctx, next) => next();
  return bearerAuth(
    [
      { token: adminToken, principal: { kind: 'admin', id: 'admin' } },
      { token: metricsToken, principal: { kind: 'metrics', id: 'metrics' } },
    ],
    ['admin', 'metrics'],
  );
}
