import { defineRoutes } from '../server/route.js';
import type { KeyStore } from './store.js';

/**
 * `GET /.well-known/jwks.json`, the public keys that verify gateway-issued JWTs, and
 * `POST /v1/keys/rotate` (admin): every replica starts signing with a new key of its own
 * (this one before answering, the others within about a second); the old keys keep verifying
 * until every token they signed has expired.
 */
export const KEY_ROUTES = defineRoutes<KeyStore>([
  {
    method: 'get',
    path: '/.well-known/jwks.json',
    roles: ['control'],
    access: 'public',
    summary: 'Public keys that verify gateway-issued JWTs.',
    ok: { 200: { description: 'JWKS', schema: 'Jwks' } },
    errors: [],
    db: true,
    async handler(ctx, keys) {
      ctx.set('Cache-Control', 'public, max-age=60');
      ctx.body = await keys.jwks();
    },
  },
  {
    method: 'post',
    path: '/v1/keys/rotate',
    roles: ['control'],
    access: 'admin',
    summary: 'Every replica starts signing JWTs with a new key.',
    ok: { 200: { description: 'Rotated', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, keys) {
      const key = await keys.rotate();
      ctx.body = { kid: key.kid, keys: (await keys.jwks()).keys.map((k) => k.kid) };
    },
  },
]);
