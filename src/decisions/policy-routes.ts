import { GatewayError } from '../errors/index.js';
import { defineRoutes } from '../server/route.js';
import { type ActiveBundle, BUNDLE_NAME, type PolicyEngine } from '../policy/index.js';

// OPA's bundle client asks for long polling with `Prefer: modes=long-polling;wait=<s>` and
// recognises a server that supports it by this content type.
const LONG_POLL_TYPE = 'application/vnd.openpolicyagent.bundles';
const MAX_WAIT_S = 300;

/** Extra status sections contributed by other parts (decision log, database, export). */
export type StatusSection = () => Record<string, unknown>;

/** What the policy routes need: the engine, and the other parts' sections of `/v1/status`. */
export interface PolicyRouteDeps {
  engine: PolicyEngine;
  sections: Record<string, StatusSection>;
}

/**
 * `GET /v1/bundles/{name}`: the OPA Bundle Service API over the bundle this gateway runs — the
 * same bytes and signature, an ETag of its digest, 304 for `If-None-Match`, optional long
 * polling — so target services (and a real `opa run`) enforce exactly what the gateway does.
 * `GET /v1/status` (admin): the active revision and digest, its source, when it was activated,
 * the last success and the last error, plus the sections other parts contribute (the decision
 * log's pending count, the database, and `export`: the decision-log exporter and status reporter).
 */
export const POLICY_ROUTES = defineRoutes<PolicyRouteDeps>([
  {
    method: 'get',
    path: '/v1/bundles/{name}',
    roles: ['control'],
    access: 'bundleReader',
    summary: 'OPA Bundle Service API: the bundle this gateway runs (ETag, long polling).',
    params: [
      { in: 'header', name: 'If-None-Match', schema: { type: 'string' }, description: 'The ETag held; 304 when unchanged.' },
      {
        in: 'header',
        name: 'Prefer',
        schema: { type: 'string' },
        description: '`modes=long-polling;wait=<s>` holds the request until a new bundle or the wait ends.',
      },
    ],
    ok: { 200: { description: 'The signed bundle archive', mediaType: 'application/gzip' }, 304: { description: 'Not modified' } },
    errors: ['not_found', 'bundle_unavailable'],
    async handler(ctx, { engine }) {
      if (ctx.params.name !== BUNDLE_NAME) throw new GatewayError('not_found', `no bundle named '${ctx.params.name}'`);
      const wait = longPollWait(ctx.get('prefer'));
      let active = engine.activeArchive();
      if (!active) throw new GatewayError('bundle_unavailable', 'no policy bundle is active');
      const etagOf = (info: ActiveBundle) => `"${info.digest}"`;
      const known = ctx.get('if-none-match');
      if (wait > 0 && known === etagOf(active.info)) {
        await waitForActivation(engine, wait * 1000, ctx.req);
        active = engine.activeArchive() ?? active;
      }
      ctx.set('ETag', etagOf(active.info));
      ctx.set('Cache-Control', 'no-cache');
      ctx.type = wait > 0 ? LONG_POLL_TYPE : 'application/gzip';
      if (known === etagOf(active.info)) {
        ctx.status = 304;
        return;
      }
      ctx.body = active.archive;
    },
  },
  {
    method: 'get',
    path: '/v1/status',
    roles: ['control'],
    access: 'reader',
    summary: 'Active bundle revision, last load error, decision log, decision-log export and status reports, database.',
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    handler(ctx, { engine, sections }) {
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
    },
  },
]);

function longPollWait(prefer: string): number {
  if (!/modes=long-polling/.test(prefer)) return 0;
  const wait = Number(/wait=(\d+)/.exec(prefer)?.[1] ?? 0);
  return Math.min(Math.max(wait, 0), MAX_WAIT_S);
}

function waitForActivation(engine: PolicyEngine, ms: number, req: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      unsubscribe();
      req.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const unsubscribe = engine.onActivate(done);
    req.once('close', done);
  });
}
