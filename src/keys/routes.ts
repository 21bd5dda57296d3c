import type Router from '@koa/router';
import type { KeyStore } from './store.js';

/** `GET /.well-known/jwks.json`: the public keys that verify gateway-issued JWTs. */
export function jwksRoutes(router: Router, keys: KeyStore): void {
  router.get('/.well-known/jwks.json', async (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=60');
    ctx.body = await keys.jwks();
  });
}
