import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose';
import { GatewayError } from '../errors/index.js';
import { issuedInFuture, JWT_ALG, type SigningKey } from '../keys/index.js';

/** The JOSE `typ` of forward tokens, so no other gateway JWT (a worker's) can pass as one. */
export const FORWARD_TOKEN_TYPE = 'cynode-forward+jwt';
/** The header a forwarded request carries its token in. */
export const FORWARD_TOKEN_HEADER = 'x-cynode-forward-token';

/** What the gateway decided and now vouches for, bound to one request body. */
export interface ForwardClaims {
  issuer: string;
  /** The target service the request is for. */
  audience: string;
  subject: string;
  /** The policy entrypoint the gateway evaluated. */
  entrypoint: string;
  /** The policy input the gateway evaluated; the target re-evaluates exactly this. */
  input: unknown;
  /** The bundle revision of the gateway's decision. */
  revision: string;
}

/** SHA-256 of a request body, base64url: the `bh` claim. */
export function bodyHash(body: Buffer | string): string {
  return createHash('sha256').update(body).digest('base64url');
}

/** Signs a short-lived forward token for one request body. */
export function signForwardToken(key: SigningKey, claims: ForwardClaims, body: Buffer | string, ttlMs: number): Promise<string> {
  return new SignJWT({ act: claims.entrypoint, input: claims.input, rev: claims.revision, bh: bodyHash(body) })
    .setProtectedHeader({ alg: JWT_ALG, kid: key.kid, typ: FORWARD_TOKEN_TYPE })
    .setIssuer(claims.issuer)
    .setAudience(claims.audience)
    .setSubject(claims.subject)
    .setJti(randomUUID())
    .setIssuedAt()
    .setExpirationTime(new Date(Date.now() + ttlMs))
    .sign(key.privateKey);
}

/** A verified forward token. */
export interface VerifiedForward extends ForwardClaims {
  jti: string;
  expiresAt: number;
}

/** Remembers token ids until they expire, so each forward token is used once. */
export interface ReplayCache {
  /** False when `jti` was already used. */
  claim(jti: string, expiresAtMs: number): boolean;
}

/** An in-memory replay cache; entries are dropped once their token has expired. */
export function createReplayCache(now: () => number = Date.now): ReplayCache {
  const seen = new Map<string, number>();
  let sweepAt = 0;
  return {
    claim(jti, expiresAtMs) {
      const t = now();
      if (t >= sweepAt) {
        for (const [id, exp] of seen) if (exp < t) seen.delete(id);
        sweepAt = t + 10_000;
      }
      if (seen.has(jti)) return false;
      seen.set(jti, expiresAtMs);
      return true;
    },
  };
}

/** What verification needs: the gateway's keys, who we are, and the replay cache. */
export interface VerifyOptions {
  keys: JWTVerifyGetKey;
  issuer: string;
  audience: string;
  replay: ReplayCache;
  /** Refuse tokens whose lifetime exceeds this (a stolen signing key cannot mint long-lived ones). */
  maxTtlMs: number;
}

/**
 * Verifies a forward token for `body`: signature by a published gateway key (ES256 only),
 * `typ`, issuer, audience, expiry, lifetime, the body hash, and single use. Every failure is
 * a 401 with a stable code; the reason never echoes the token.
 */
export async function verifyForwardToken(
  token: string | undefined,
  body: Buffer | string,
  options: VerifyOptions,
): Promise<VerifiedForward> {
  if (!token) throw new GatewayError('forward_token_invalid', 'no forward token');
  let payload;
  try {
    ({ payload } = await jwtVerify(token, options.keys, {
      algorithms: [JWT_ALG],
      typ: FORWARD_TOKEN_TYPE,
      issuer: options.issuer,
      audience: options.audience,
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'act', 'rev', 'bh'],
    }));
  } catch (err) {
    const why = err instanceof joseErrors.JWTExpired ? 'expired' : err instanceof joseErrors.JOSEError ? err.code : 'unverifiable';
    throw new GatewayError('forward_token_invalid', `forward token refused: ${why}`);
  }
  const { exp, iat, jti, sub, act, rev, bh, input } = payload as Record<string, unknown>;
  if (typeof exp !== 'number' || typeof iat !== 'number' || (exp - iat) * 1000 > options.maxTtlMs) {
    throw new GatewayError('forward_token_invalid', 'forward token lifetime too long');
  }
  if (issuedInFuture(iat)) throw new GatewayError('forward_token_invalid', 'forward token issued in the future');
  if (typeof act !== 'string' || typeof rev !== 'string' || typeof sub !== 'string' || typeof jti !== 'string' || typeof bh !== 'string') {
    throw new GatewayError('forward_token_invalid', 'forward token claims malformed');
  }
  const expected = Buffer.from(bodyHash(body));
  const presented = Buffer.from(bh);
  if (expected.length !== presented.length || !timingSafeEqual(expected, presented)) {
    throw new GatewayError('forward_body_mismatch', 'the request body is not the one the gateway decided on');
  }
  if (!options.replay.claim(jti, exp * 1000)) throw new GatewayError('forward_token_replayed', 'forward token already used');
  return {
    issuer: options.issuer,
    audience: options.audience,
    subject: sub,
    entrypoint: act,
    input,
    revision: rev,
    jti,
    expiresAt: exp * 1000,
  };
}
