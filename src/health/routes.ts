import { ROLES } from '../server/roles.js';
import { defineRoutes } from '../server/route.js';
import type { HealthService } from './service.js';

/**
 * `/healthz` (liveness: the process answers) and `/readyz` (readiness: database reachable and
 * a verified bundle active), on every role. A not-ready answer is 503 with the failing check's
 * stable code.
 */
export const HEALTH_ROUTES = defineRoutes<HealthService>([
  {
    method: 'get',
    path: '/healthz',
    roles: ROLES,
    access: 'public',
    summary: 'Liveness: the process answers.',
    ok: { 200: { description: 'Alive', schema: 'Health' } },
    errors: [],
    handler(ctx) {
      ctx.body = { status: 'ok', role: ctx.state.role };
    },
  },
  {
    method: 'get',
    path: '/readyz',
    roles: ROLES,
    access: 'public',
    summary: 'Readiness: database reachable and a verified bundle active.',
    ok: { 200: { description: 'Ready', schema: 'Ready' } },
    errors: ['database_unavailable', 'bundle_unavailable'],
    refusal: 'Ready',
    async handler(ctx, health) {
      const role = ctx.state.role;
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
    },
  },
]);
