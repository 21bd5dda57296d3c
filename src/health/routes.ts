import type Router from '@koa/router';
import type { HealthService } from './service.js';

/**
 * `/healthz` (liveness: the process answers) and `/readyz` (readiness: database reachable and
 * a verified bundle active). A not-ready answer is 503 with the failing check's stable code.
 */
export function healthRoutes(router: Router, health: HealthService, role: string): void {
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok', role };
  });
  router.get('/readyz', async (ctx) => {
    const r = await health.readiness();
    if (r.ready) {
      ctx.body = { status: 'ready', role, database: r.database, bundle: r.bundle };
      return;
    }
    const code = !r.database.ok ? 'database_unavailable' : 'bundle_unavailable';
    const message = !r.database.ok
      ? (r.database.error ?? 'database unreachable')
      : (r.bundle.lastError?.message ?? 'no policy bundle is active');
    ctx.status = 503;
    ctx.body = { status: 'not_ready', role, error: { code, message }, database: r.database, bundle: r.bundle };
  });
}
