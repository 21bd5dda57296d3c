import { createLocalJWKSet, type JWTVerifyGetKey } from 'jose';
import type { KeyStore } from './store.js';

/**
 * The gateway's published public keys as a jose key resolver, rebuilt only when the JWKS
 * changes: every replica's keys verify, and no verification costs a database read.
 */
export function localKeySet(keys: KeyStore): JWTVerifyGetKey {
  let cached: { json: string; set: ReturnType<typeof createLocalJWKSet> } | undefined;
  return async (header, token) => {
    const jwks = await keys.jwks();
    const json = JSON.stringify(jwks);
    if (cached?.json !== json) cached = { json, set: createLocalJWKSet(jwks) };
    return cached.set(header, token);
  };
}
