import type Router from '@koa/router';
import { GatewayError } from '../errors/index.js';
import type { ActiveBundle, PolicyEngine } from './engine.js';

/** The name target services pull the gateway's bundle under: `GET /v1/bundles/cynode`. */
export const BUNDLE_NAME = 'cynode';

// OPA's bundle client asks for long polling with `Prefer: modes=long-polling;wait=<s>` and
// recognises a server that supports it by this content type.
const LONG_POLL_TYPE = 'application/vnd.openpolicyagent.bundles';
const MAX_WAIT_S = 300;

/**
 * `GET /v1/bundles/{name}`: the OPA Bundle Service API over the bundle this gateway runs —
 * the same bytes and signature, an ETag of its digest, 304 for `If-None-Match`, and optional
 * long polling, so target services (and a real `opa run`) enforce exactly what the gateway does.
 */
export function bundleServiceRoutes(router: Router, engine: PolicyEngine): void {
  router.get('/v1/bundles/:name', async (ctx) => {
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
  });
}

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
