import { randomUUID } from 'node:crypto';
import {
  base64url,
  type CryptoKey,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  importJWK,
  type JWK,
  SignJWT,
} from 'jose';
import type { SigningKey } from '../../src/keys/index.js';

/** One crafted token and what it tries. */
export interface Attack {
  name: string;
  token: string;
  /** The attack is on the token's lifetime (a verifier may answer with its "expired" code). */
  expired?: boolean;
}

/** What the attacks start from: a genuine token of the kind the surface takes, and the gateway's keys. */
export interface AttackBase {
  /** A real token the surface accepts (its header and claims are copied, never the token itself). */
  genuine: string;
  /** The gateway's signing key, for tokens whose signature is valid but whose claims are not. */
  gatewayKey: SigningKey;
  /** The gateway's published public key (JWKS entry), for key-confusion attacks. */
  publicJwk: JWK;
}

const enc = (value: unknown) => base64url.encode(JSON.stringify(value));
const now = () => Math.floor(Date.now() / 1000);

let attackerKey: Promise<{ privateKey: CryptoKey; publicJwk: JWK }> | undefined;
/** An ES256 key the gateway never published (one per process). */
export function attackerKeyPair(): Promise<{ privateKey: CryptoKey; publicJwk: JWK }> {
  attackerKey ??= (async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid: `attacker-${randomUUID()}`, alg: 'ES256', use: 'sig' } };
  })();
  return attackerKey;
}

/** Signs `claims` under `header` (alg defaults to ES256) with `key`. */
export function sign(key: CryptoKey | Uint8Array, header: Record<string, unknown>, claims: Record<string, unknown>): Promise<string> {
  // jose refuses to sign a `crit` it does not know unless told to: the attacker's signer does.
  const crit = Array.isArray(header.crit) ? Object.fromEntries((header.crit as string[]).map((name) => [name, true])) : undefined;
  return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', ...header } as never).sign(key, crit && { crit });
}

/** Flips one character in the middle of a base64url segment, so its bytes really change. */
function flip(segment: string): string {
  const i = Math.floor(segment.length / 2);
  const c = segment[i] === 'A' ? 'B' : 'A';
  return segment.slice(0, i) + c + segment.slice(i + 1);
}

/**
 * The JWT attack set against one surface, derived from a genuine token of the kind it takes:
 * unsigned and key-confused tokens, stripped, tampered and foreign signatures, valid signatures
 * over bad claims (expired, not yet valid, wrong audience, issuer or type, unknown or injected
 * kid), header-embedded keys (jku, x5u, jwk), and junk. Each must be refused.
 */
export async function jwtAttacks(base: AttackBase): Promise<Attack[]> {
  const header = decodeProtectedHeader(base.genuine) as Record<string, unknown>;
  const claims = decodeJwt(base.genuine) as Record<string, unknown>;
  const [h, p, s] = base.genuine.split('.') as [string, string, string];
  const t = now();
  const life = typeof claims.exp === 'number' && typeof claims.iat === 'number' ? claims.exp - claims.iat : 600;
  const fresh = { ...claims, iat: t, exp: t + Math.min(life, 600) };
  const real = base.gatewayKey.privateKey;
  const attacker = await attackerKeyPair();
  const pem = await exportSPKI((await importJWK(base.publicJwk, 'ES256', { extractable: true })) as CryptoKey);
  const other = typeof claims.sub === 'string' ? `${claims.sub}-other` : 'someone-else';

  const attacks: Attack[] = [
    // No signature at all.
    { name: 'alg none', token: `${enc({ ...header, alg: 'none' })}.${enc(fresh)}.` },
    { name: 'alg None', token: `${enc({ ...header, alg: 'None' })}.${enc(fresh)}.` },
    { name: 'alg NONE with the original signature', token: `${enc({ ...header, alg: 'NONE' })}.${p}.${s}` },
    { name: 'signature stripped', token: `${h}.${p}.` },
    { name: 'signature segment missing', token: `${h}.${p}` },
    // Key confusion: HMAC keyed with the public key, as the JWK JSON and as PEM.
    {
      name: 'HS256 keyed with the public JWK',
      token: await sign(new TextEncoder().encode(JSON.stringify(base.publicJwk)), { ...header, alg: 'HS256' }, fresh),
    },
    { name: 'HS256 keyed with the public PEM', token: await sign(new TextEncoder().encode(pem), { ...header, alg: 'HS256' }, fresh) },
    {
      name: 'HS256 keyed with the public key x coordinate',
      token: await sign(base64url.decode(String(base.publicJwk.x)), { ...header, alg: 'HS256' }, fresh),
    },
    // Signatures that do not match.
    { name: 'signature tampered', token: `${h}.${p}.${flip(s)}` },
    { name: 'payload tampered (sub), original signature', token: `${h}.${enc({ ...claims, sub: other })}.${s}` },
    { name: 'payload tampered (exp), original signature', token: `${h}.${enc({ ...claims, exp: t + 86_400 * 365 })}.${s}` },
    { name: 'header tampered (typ), original signature', token: `${enc({ ...header, typ: 'JWT' })}.${p}.${s}` },
    { name: 'signed by another ES256 key under the real kid', token: await sign(attacker.privateKey, header, fresh) },
    {
      name: 'signed by another ES256 key under its own kid',
      token: await sign(attacker.privateKey, { ...header, kid: attacker.publicJwk.kid }, fresh),
    },
    { name: 'signature of another token', token: `${h}.${p}.${(await sign(real, header, { ...fresh, sub: other })).split('.')[2]}` },
    // Valid signatures by the gateway's own key over claims that must not pass.
    { name: 'expired', token: await sign(real, header, { ...claims, iat: t - 2 * life - 120, exp: t - life - 60 }), expired: true },
    { name: 'expired by one second', token: await sign(real, header, { ...claims, iat: t - life - 1, exp: t - 1 }), expired: true },
    { name: 'not yet valid (nbf in the future)', token: await sign(real, header, { ...fresh, nbf: t + 3600 }) },
    {
      name: 'issued in the future (iat)',
      token: await sign(real, header, { ...claims, iat: t + 3600, exp: t + 3600 + Math.min(life, 600) }),
    },
    { name: 'wrong aud', token: await sign(real, header, { ...fresh, aud: 'someone-else' }) },
    { name: 'aud missing', token: await sign(real, header, { ...fresh, aud: undefined }) },
    { name: 'wrong iss', token: await sign(real, header, { ...fresh, iss: 'https://evil.example' }) },
    { name: 'iss missing', token: await sign(real, header, { ...fresh, iss: undefined }) },
    { name: 'exp missing', token: await sign(real, header, { ...fresh, exp: undefined }) },
    { name: 'exp not a number', token: await sign(real, header, { ...fresh, exp: 'never' }) },
    { name: 'wrong typ', token: await sign(real, { ...header, typ: 'JWT' }, fresh) },
    { name: 'typ missing', token: await sign(real, { ...header, typ: undefined }, fresh) },
    { name: 'unknown kid', token: await sign(real, { ...header, kid: randomUUID() }, fresh) },
    { name: 'kid missing', token: await sign(attacker.privateKey, { ...header, kid: undefined }, fresh) },
    { name: 'kid path traversal', token: await sign(real, { ...header, kid: '../../../../../../dev/null' }, fresh) },
    { name: 'kid SQL injection', token: await sign(real, { ...header, kid: "x' OR '1'='1' --" }, fresh) },
    { name: 'kid not a string', token: await sign(real, { ...header, kid: { $ne: null } }, fresh) },
    { name: 'unknown crit header', token: await sign(real, { ...header, crit: ['cynode-escalate'], 'cynode-escalate': true }, fresh) },
    // Keys the token brings along must never be trusted.
    {
      name: 'jku to an attacker JWKS',
      token: await sign(attacker.privateKey, { ...header, kid: attacker.publicJwk.kid, jku: 'http://127.0.0.1:9/jwks.json' }, fresh),
    },
    {
      name: 'x5u to an attacker certificate',
      token: await sign(attacker.privateKey, { ...header, kid: attacker.publicJwk.kid, x5u: 'http://127.0.0.1:9/cert.pem' }, fresh),
    },
    {
      name: 'embedded jwk',
      token: await sign(
        attacker.privateKey,
        { ...header, kid: undefined, jwk: { kty: 'EC', crv: 'P-256', x: attacker.publicJwk.x, y: attacker.publicJwk.y } },
        fresh,
      ),
    },
    {
      name: 'embedded jwk under the real kid',
      token: await sign(
        attacker.privateKey,
        { ...header, jwk: { kty: 'EC', crv: 'P-256', x: attacker.publicJwk.x, y: attacker.publicJwk.y } },
        fresh,
      ),
    },
    // Junk.
    { name: 'huge token', token: `${enc({ ...header })}.${enc({ ...fresh, pad: 'A'.repeat(6000) })}.${flip(s)}` },
    { name: 'not base64', token: '!!!.@@@.###' },
    { name: 'not a JWT', token: 'not-a-token' },
    { name: 'header not JSON', token: `${base64url.encode('{"alg":"ES256",')}.${p}.${s}` },
    { name: 'header a JSON array', token: `${base64url.encode('["ES256"]')}.${p}.${s}` },
    { name: 'payload not JSON', token: `${h}.${base64url.encode('not json')}.${s}` },
    { name: 'five segments (JWE shape)', token: `${h}.${p}.${s}.${s}.${s}` },
    { name: 'latin-1 bytes', token: `${h}.\u00e9\u00ff\u00e0.${s}` },
  ];
  return attacks;
}
