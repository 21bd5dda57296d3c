import { createLocalJWKSet, errors, type JWTVerifyGetKey } from 'jose';
import type { KeyStore } from './store.js';

/** A kid this process has not seen makes it re-read the JWKS at most this often. */
const MISS_REFRESH_MS = 100;

/**
 * The gateway's published public keys as a jose key resolver, rebuilt only when the JWKS
 * changes: every replica's keys verify, and no verification costs a database read. A token
 * whose kid is not in the cached set (another replica has just rotated) re-reads the JWKS
 * once, at most every {@link MISS_REFRESH_MS}, so a flood of made-up kids costs little.
 */
export function localKeySet(keys: KeyStore): JWTVerifyGetKey {
  let cached: { json: string; set: ReturnType<typeof createLocalJWKSet> } | undefined;
  let lastFresh = 0;
  const load = async (fresh: boolean) => {
    const jwks = await keys.jwks(fresh);
    const json = JSON.stringify(jwks);
    if (cached?.json !== json) cached = { json, set: createLocalJWKSet(jwks) };
    return cached.set;
  };
  return async (header, token) => {
    const set = await load(false);
    try {
      return await set(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey) || Date.now() - lastFresh < MISS_REFRESH_MS) throw err;
      lastFresh = Date.now();
      return (await load(true))(header, token);
    }
  };
}
