import type Router from '@koa/router';
import type { Metrics } from './registry.js';

/** `GET /metrics` in the Prometheus text format; `beforeScrape` refreshes point-in-time gauges. */
export function metricsRoutes(router: Router, metrics: Metrics, beforeScrape: () => void | Promise<void>): void {
  router.get('/metrics', async (ctx) => {
    await beforeScrape();
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });
}
