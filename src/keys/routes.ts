import type Router from '@koa/router';
import type { KeyStore } from './store.js';

/** `GET /.well-known/jwks.json`: the public keys that verify gateway-issued JWTs. */
export function jwksRoutes(router: Router, keys: KeyStore): void {
  router.get('/.well-known/jwks.json', async (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=60');
    ctx.body = await keys.jwks();
  });
}

/**
 * `POST /v1/keys/rotate` (admin): this replica starts signing with a new key; the old one
 * keeps verifying until every token it signed has expired.
 */
export function keyAdminRoutes(router: Router, keys: KeyStore): void {
  router.post('/v1/keys/rotate', async (ctx) => {
    const key = await keys.rotate();
    ctx.body = { kid: key.kid, keys: (await keys.jwks()).keys.map((k) => k.kid) };
  });
}
