import type Router from '@koa/router';
import type { PolicyEngine } from './engine.js';
import { BUNDLE_NAME } from './service-routes.js';

/** Extra status sections contributed by other parts (decision log, database). */
export type StatusSection = () => Record<string, unknown>;

/**
 * `GET /v1/status` (admin): per bundle, the active revision and digest, its source, when it
 * was activated, the last success and the last error; plus whatever sections are passed in.
 */
export function statusRoutes(router: Router, engine: PolicyEngine, sections: Record<string, StatusSection>): void {
  router.get('/v1/status', (ctx) => {
    const s = engine.status();
    ctx.body = {
      bundles: {
        [BUNDLE_NAME]: {
          active: s.active && {
            revision: s.active.revision,
            digest: s.active.digest,
            source: s.active.source,
            activatedAt: s.active.activatedAt.toISOString(),
            entrypoints: s.active.entrypoints,
          },
          lastSuccessAt: s.lastSuccessAt?.toISOString() ?? null,
          lastError: s.lastError ? { ...s.lastError, at: s.lastError.at.toISOString() } : null,
        },
      },
      ...Object.fromEntries(Object.entries(sections).map(([name, section]) => [name, section()])),
    };
  });
}
