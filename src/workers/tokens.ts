import { errors as joseErrors, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { GatewayError } from '../errors/index.js';
import { issuedInFuture, JWT_ALG, type KeyStore, localKeySet } from '../keys/index.js';

/** `typ` of a worker token; no other gateway token (forward tokens) verifies as one. */
export const WORKER_TOKEN_TYPE = 'cynode-worker+jwt';
/** `aud` of a worker token: the Worker API of this gateway. */
export const WORKER_AUDIENCE = 'cynode-worker-api';

/** How many verified tokens a process remembers unless told otherwise. */
export const VERIFIED_CACHE_SIZE = 10_000;

/** What a verified worker token says. */
export interface WorkerClaims {
  nodeId: string;
  sessionId: string;
  expiresAt: Date;
}

/** Issues and verifies the short-lived JWTs workers use after registering with a PSK. */
export interface WorkerTokens {
  issue(nodeId: string, sessionId: string): Promise<{ token: string; expiresAt: Date }>;
  verify(token: string): Promise<WorkerClaims>;
  /**
   * Verifies a token that may have expired up to `graceMs` ago: proof that a re-registering
   * worker is the session that holds its node id, never accepted for anything else.
   */
  verifyForRenewal(token: string, graceMs: number): Promise<WorkerClaims>;
  /** How many verified tokens this process remembers now (never more than the cache size). */
  cached(): number;
}

/**
 * Creates the worker token issuer and verifier over the gateway's signing keys; `cacheSize`
 * bounds the verified-token cache ({@link VERIFIED_CACHE_SIZE} unless given).
 */
export function createWorkerTokens(deps: { keys: KeyStore; issuer: string; ttlMs: number; cacheSize?: number | undefined }): WorkerTokens {
  const keySet = localKeySet(deps.keys);
  const verifyWith = async (token: string, graceMs: number): Promise<WorkerClaims> => {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keySet, {
        issuer: deps.issuer,
        audience: WORKER_AUDIENCE,
        typ: WORKER_TOKEN_TYPE,
        algorithms: [JWT_ALG],
        requiredClaims: ['sub', 'sid', 'exp', 'iat'],
        clockTolerance: Math.floor(graceMs / 1000),
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw new GatewayError('token_expired', 'the worker token has expired; register again');
      throw new GatewayError('token_invalid', 'the worker token is not valid');
    }
    if (typeof payload.sub !== 'string' || typeof payload.sid !== 'string' || issuedInFuture(payload.iat))
      throw new GatewayError('token_invalid', 'the worker token is not valid');
    return { nodeId: payload.sub, sessionId: payload.sid, expiresAt: new Date(payload.exp! * 1000) };
  };

  // Verified tokens, keyed by the exact token string, so a worker's every call does not pay
  // for an ES256 verification: any other string (one byte changed) is verified in full, and a
  // refusal is never remembered. An entry lives no longer than its token's exp; whether the
  // session still holds is checked on every call by the caller (WorkerService.authenticate),
  // never cached here. Bounded: the least recently used entry goes first (a Map keeps
  // insertion order, and a hit is moved to the end).
  const size = Math.max(1, deps.cacheSize ?? VERIFIED_CACHE_SIZE);
  const verified = new Map<string, WorkerClaims>();
  const remember = (token: string, claims: WorkerClaims) => {
    verified.delete(token);
    while (verified.size >= size) verified.delete(verified.keys().next().value!);
    verified.set(token, claims);
  };

  return {
    async issue(nodeId, sessionId) {
      const key = deps.keys.current();
      const issuedAt = Math.floor(Date.now() / 1000);
      const expiresAt = new Date((issuedAt + Math.floor(deps.ttlMs / 1000)) * 1000);
      const token = await new SignJWT({ sid: sessionId })
        .setProtectedHeader({ alg: JWT_ALG, typ: WORKER_TOKEN_TYPE, kid: key.kid })
        .setIssuer(deps.issuer)
        .setAudience(WORKER_AUDIENCE)
        .setSubject(nodeId)
        .setIssuedAt(issuedAt)
        .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
        .sign(key.privateKey);
      return { token, expiresAt };
    },
    async verify(token) {
      const hit = verified.get(token);
      if (hit) {
        verified.delete(token);
        if (hit.expiresAt.getTime() > Date.now()) {
          verified.set(token, hit);
          return hit;
        }
      }
      const claims = await verifyWith(token, 0);
      remember(token, claims);
      return claims;
    },
    verifyForRenewal: (token, graceMs) => verifyWith(token, graceMs),
    cached: () => verified.size,
  };
}
