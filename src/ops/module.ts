import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Core } from '../core/module.js';
import { createHealthService, HEALTH_ROUTES } from '../health/index.js';
import { packageRoot } from '../lib/package-root.js';
import { METRICS_ROUTES, metricsAuthenticator } from '../metrics/index.js';
import { buildOpenApiDocument, type OpenApiDocument, OPENAPI_ROUTES } from '../openapi/index.js';
import type { Authenticators } from '../server/app.js';
import { bindRoutes, type BoundRoute } from '../server/route.js';

/**
 * The routes every role answers for operators: `/healthz`, `/readyz`, `/metrics` (point-in-time
 * gauges refreshed by `refreshGauges` at each scrape, behind `auth.metricsToken` when one is
 * set) and `/openapi.json`.
 */
export function startOps(
  core: Core,
  refreshGauges: (() => Promise<void>)[],
): { routes: BoundRoute[]; authenticators: Pick<Authenticators, 'metrics'> } {
  const health = createHealthService({ db: core.db, policy: core.policy, readyCheckTimeoutMs: core.config.server.readyCheckTimeoutMs });
  const beforeScrape = async () => {
    core.decisionMetrics.decisionLogPending.set(core.decisionLog.pending());
    await Promise.all(refreshGauges.map((refresh) => refresh()));
  };
  let document: OpenApiDocument | undefined;
  const openApi = () => (document ??= buildOpenApiDocument(packageVersion()));
  return {
    authenticators: { metrics: metricsAuthenticator(core.config.auth.metricsToken, core.adminToken) },
    routes: [
      ...bindRoutes(HEALTH_ROUTES, health),
      ...bindRoutes(METRICS_ROUTES, { registry: core.registry, beforeScrape }),
      ...bindRoutes(OPENAPI_ROUTES, openApi),
    ],
  };
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
