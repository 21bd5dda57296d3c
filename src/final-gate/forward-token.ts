import { createHash, createHmac, hkdfSync, KeyObject, randomUUID, sign, timingSafeEqual } from 'node:crypto';
import { type CryptoKey, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
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

// The node:crypto key behind each signing key, and each key's encoded JOSE header: made once per key, not per token.
const signers = new WeakMap<CryptoKey, { kid: string; key: KeyObject; header: string }>();

function signerOf(key: SigningKey): { key: KeyObject; header: string } {
  let signer = signers.get(key.privateKey);
  if (!signer || signer.kid !== key.kid) {
    const privateKey = KeyObject.from(key.privateKey);
    if (privateKey.type !== 'private' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
      throw new Error('forward tokens are signed with a P-256 private key (ES256)');
    const header = Buffer.from(JSON.stringify({ alg: JWT_ALG, kid: key.kid, typ: FORWARD_TOKEN_TYPE })).toString('base64url');
    signer = { kid: key.kid, key: privateKey, header };
    signers.set(key.privateKey, signer);
  }
  return signer;
}

/**
 * Signs a short-lived forward token for one request body: a compact ES256 JWS (`alg`, `kid`,
 * `typ` header; `iss`, `aud`, `sub`, `act`, `rev`, `input`, the body hash `bh`, a fresh `jti`,
 * `iat`, `exp` claims), what any JOSE library verifies against the gateway's JWKS. Signed with
 * node:crypto directly (the raw r||s signature JWS wants), the claims serialised once.
 */
export async function signForwardToken(key: SigningKey, claims: ForwardClaims, body: Buffer | string, ttlMs: number): Promise<string> {
  const signer = signerOf(key);
  const now = Date.now();
  const payload = {
    act: claims.entrypoint,
    input: claims.input,
    rev: claims.revision,
    bh: bodyHash(body),
    iss: claims.issuer,
    aud: claims.audience,
    sub: claims.subject,
    jti: randomUUID(),
    iat: Math.floor(now / 1000),
    exp: Math.floor((now + ttlMs) / 1000),
  };
  const signed = `${signer.header}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const signature = sign('sha256', Buffer.from(signed), { key: signer.key, dsaEncoding: 'ieee-p1363' });
  return `${signed}.${signature.toString('base64url')}`;
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

/**
 * The prefix of a MAC forward token: the egress hop's cheaper form, for a hop between two
 * processes that both hold the vault's master keys (the control plane seals credentials with
 * them, API Egress opens them). `cfm1.<kid>.<claims, base64url JSON>.<HMAC-SHA256, base64url>`.
 */
export const FORWARD_MAC_PREFIX = 'cfm1';

/** Master keys as the vault's key ring holds them (`kid` names a key without revealing it). */
export interface MacKeySource {
  current: { kid: string; key: Buffer };
  byKid(kid: string): { kid: string; key: Buffer } | undefined;
}

/** The MAC keys of forward tokens: one per master key, derived (HKDF-SHA256) for this one purpose. */
export interface ForwardMacKeys {
  current(): { kid: string; key: Buffer };
  byKid(kid: string): Buffer | undefined;
}

const MAC_INFO = 'cynode forward token mac v1';

/** MAC keys derived from `source`'s master keys, each derived once; a master key never signs anything itself. */
export function forwardMacKeys(source: MacKeySource): ForwardMacKeys {
  const derived = new Map<string, Buffer>();
  const derive = (master: { kid: string; key: Buffer }) => {
    let key = derived.get(master.kid);
    if (!key) {
      key = Buffer.from(hkdfSync('sha256', master.key, Buffer.from(FORWARD_MAC_PREFIX), MAC_INFO, 32));
      derived.set(master.kid, key);
    }
    return key;
  };
  return {
    current: () => ({ kid: source.current.kid, key: derive(source.current) }),
    byKid: (kid) => {
      const master = source.byKid(kid);
      return master && derive(master);
    },
  };
}

const macOf = (key: Buffer, signed: string) => createHmac('sha256', key).update(signed).digest();

/** Signs a short-lived MAC forward token for one request body: the claims of a JWT forward token, bound the same way. */
export function signForwardMac(keys: ForwardMacKeys, claims: ForwardClaims, body: Buffer | string, ttlMs: number): string {
  const { kid, key } = keys.current();
  const iat = Math.floor(Date.now() / 1000);
  const payload = {
    iss: claims.issuer,
    aud: claims.audience,
    sub: claims.subject,
    act: claims.entrypoint,
    rev: claims.revision,
    input: claims.input,
    bh: bodyHash(body),
    jti: randomUUID(),
    iat,
    exp: Math.floor((Date.now() + ttlMs) / 1000),
  };
  const signed = `${FORWARD_MAC_PREFIX}.${kid}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  return `${signed}.${macOf(key, signed).toString('base64url')}`;
}

/** What verifying a MAC forward token needs: the MAC keys, who we are, and the replay cache. */
export type MacVerifyOptions = Omit<VerifyOptions, 'keys'> & { macKeys: ForwardMacKeys };

const refuse = (why: string) => new GatewayError('forward_token_invalid', `forward token refused: ${why}`);

/** The claims of a MAC forward token whose MAC checks out under a key the ring still holds. */
function macClaims(token: string, keys: ForwardMacKeys): Record<string, unknown> {
  const parts = token.split('.');
  if (parts.length !== 4 || parts[0] !== FORWARD_MAC_PREFIX) throw refuse('malformed');
  const [, kid, payload, mac] = parts as [string, string, string, string];
  const key = keys.byKid(kid);
  if (!key) throw refuse('unknown key');
  const expected = macOf(key, `${FORWARD_MAC_PREFIX}.${kid}.${payload}`);
  const presented = Buffer.from(mac, 'base64url');
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) throw refuse('bad MAC');
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown;
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw new Error('not an object');
    return claims as Record<string, unknown>;
  } catch {
    throw refuse('claims are not a JSON object');
  }
}

/**
 * Verifies a MAC forward token for `body` with the same checks as a JWT forward token: MAC,
 * issuer, audience, expiry, lifetime, issue time, the body hash, and single use. Every failure
 * is a 401 with a stable code; the reason never echoes the token.
 */
export function verifyForwardMac(token: string, body: Buffer | string, options: MacVerifyOptions): VerifiedForward {
  const { iss, aud, exp, iat, jti, sub, act, rev, bh, input } = macClaims(token, options.macKeys);
  if (iss !== options.issuer) throw refuse('unexpected issuer');
  if (aud !== options.audience) throw refuse('unexpected audience');
  if (typeof exp !== 'number' || typeof iat !== 'number' || !Number.isInteger(exp) || !Number.isInteger(iat))
    throw refuse('claims malformed');
  if (exp * 1000 <= Date.now()) throw refuse('expired');
  if ((exp - iat) * 1000 > options.maxTtlMs) throw new GatewayError('forward_token_invalid', 'forward token lifetime too long');
  if (issuedInFuture(iat)) throw new GatewayError('forward_token_invalid', 'forward token issued in the future');
  if (typeof act !== 'string' || typeof rev !== 'string' || typeof sub !== 'string' || typeof jti !== 'string' || typeof bh !== 'string') {
    throw new GatewayError('forward_token_invalid', 'forward token claims malformed');
  }
  if (input === undefined) throw new GatewayError('forward_token_invalid', 'forward token claims malformed');
  const expected = Buffer.from(bodyHash(body));
  const presented = Buffer.from(bh);
  if (expected.length !== presented.length || !timingSafeEqual(expected, presented)) {
    throw new GatewayError('forward_body_mismatch', 'the request body is not the one the gateway decided on');
  }
  if (!options.replay.claim(jti, exp * 1000)) throw new GatewayError('forward_token_replayed', 'forward token already used');
  return { issuer: iss, audience: aud, subject: sub, entrypoint: act, input, revision: rev, jti, expiresAt: exp * 1000 };
}
