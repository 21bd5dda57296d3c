import { readFileSync } from 'node:fs';
import { compactVerify, decodeProtectedHeader, errors as joseErrors, importSPKI, importX509, type CryptoKey } from 'jose';
import { parse as parseYaml } from 'yaml';
import { BundleError } from './errors.js';
import { OPA_HASH_ALGORITHMS, opaFileDigest } from './opa-hash.js';

/** One trusted bundle-signing key, in OPA's `keys:` shape. */
export interface VerificationKey {
  algorithm: string;
  key: CryptoKey | Uint8Array;
  scope?: string;
}

/** Trusted keys by key id. */
export type VerificationKeys = ReadonlyMap<string, VerificationKey>;

const ASYMMETRIC = /^(RS|PS|ES)(256|384|512)$/;
const HMAC = /^HS(256|384|512)$/;

/**
 * Reads a keys file in OPA's `keys:` shape (YAML or JSON): `<key id>: {algorithm, key, scope?}`
 * where `key` is a PEM public key or certificate, or the HMAC secret. Errors name the key id,
 * never the key material.
 */
export async function loadVerificationKeys(text: string): Promise<VerificationKeys> {
  const doc = (parseYaml(text) ?? {}) as Record<string, unknown>;
  const root = (doc.keys && typeof doc.keys === 'object' ? doc.keys : doc) as Record<string, unknown>;
  const keys = new Map<string, VerificationKey>();
  for (const [id, raw] of Object.entries(root)) {
    const entry = raw as { algorithm?: unknown; key?: unknown; scope?: unknown } | null;
    const algorithm = typeof entry?.algorithm === 'string' ? entry.algorithm : 'RS256';
    if (typeof entry?.key !== 'string' || entry.key === '') throw new Error(`verification key '${id}' has no key`);
    let key: CryptoKey | Uint8Array;
    if (HMAC.test(algorithm)) key = new TextEncoder().encode(entry.key);
    else if (ASYMMETRIC.test(algorithm)) {
      try {
        key = entry.key.includes('BEGIN CERTIFICATE') ? await importX509(entry.key, algorithm) : await importSPKI(entry.key, algorithm);
      } catch {
        throw new Error(`verification key '${id}' is not a valid ${algorithm} public key (PEM)`);
      }
    } else throw new Error(`verification key '${id}' has an unsupported algorithm '${algorithm}'`);
    keys.set(id, { algorithm, key, ...(typeof entry.scope === 'string' && { scope: entry.scope }) });
  }
  return keys;
}

/** Reads and parses a keys file. */
export async function loadVerificationKeysFile(path: string): Promise<VerificationKeys> {
  return loadVerificationKeys(readFileSync(path, 'utf8'));
}

interface SignedFile {
  name: string;
  hash: string;
  algorithm: string;
}

/**
 * Verifies a bundle's `.signatures.json` as OPA does: one JWS, checked with the trusted key
 * its `kid` (or payload `keyid`, or the only configured key) names and that key's algorithm;
 * then its file list must match the bundle exactly and every digest must match, structured
 * files hashed from their canonical form. Each failure has its own BundleError code.
 */
export async function verifyBundleSignature(
  files: ReadonlyMap<string, Buffer>,
  keys: VerificationKeys,
): Promise<{ keyId: string; files: string[] }> {
  const raw = files.get('.signatures.json');
  if (!raw) throw new BundleError('signature_missing', 'the bundle is not signed (.signatures.json missing)');
  let jws: string;
  try {
    const doc = JSON.parse(raw.toString('utf8')) as { signatures?: unknown };
    if (!Array.isArray(doc.signatures) || doc.signatures.length !== 1 || typeof doc.signatures[0] !== 'string') throw new Error();
    jws = doc.signatures[0];
  } catch {
    throw new BundleError('signature_invalid', '.signatures.json must hold exactly one signature');
  }
  let header: { alg?: string; kid?: string };
  let claimed: { files?: unknown; keyid?: unknown; scope?: unknown };
  try {
    header = decodeProtectedHeader(jws);
    claimed = JSON.parse(Buffer.from(jws.split('.')[1] ?? '', 'base64url').toString('utf8')) as typeof claimed;
  } catch {
    throw new BundleError('signature_invalid', 'the bundle signature is not a JWS');
  }
  const keyId = header.kid ?? (typeof claimed.keyid === 'string' ? claimed.keyid : keys.size === 1 ? [...keys.keys()][0]! : '');
  const trusted = keys.get(keyId);
  if (!trusted) throw new BundleError('signature_key_unknown', `no trusted key '${keyId || '(none named)'}' for the bundle signature`);
  if (header.alg !== trusted.algorithm) {
    throw new BundleError('signature_algorithm_mismatch', `signed with ${header.alg}, but key '${keyId}' is ${trusted.algorithm}`);
  }
  try {
    await compactVerify(jws, trusted.key, { algorithms: [trusted.algorithm] });
  } catch (err) {
    const why = err instanceof joseErrors.JOSEError ? err.code : 'unverifiable';
    throw new BundleError('signature_invalid', `the bundle signature does not verify with key '${keyId}' (${why})`);
  }
  if (trusted.scope !== undefined && claimed.scope !== trusted.scope) {
    throw new BundleError('signature_invalid', `the bundle signature scope does not match key '${keyId}'`);
  }
  checkFiles(files, listOf(claimed.files));
  return { keyId, files: [...files.keys()].filter((f) => f !== '.signatures.json') };
}

function listOf(value: unknown): SignedFile[] {
  if (!Array.isArray(value) || !value.every((f) => typeof f?.name === 'string' && typeof f?.hash === 'string')) {
    throw new BundleError('signature_invalid', 'the signature payload has no valid file list');
  }
  return value.map((f: { name: string; hash: string; algorithm?: string }) => ({
    name: f.name.replace(/^\/+/, ''),
    hash: f.hash.toLowerCase(),
    algorithm: f.algorithm ?? 'SHA-256',
  }));
}

function checkFiles(files: ReadonlyMap<string, Buffer>, signed: SignedFile[]): void {
  const listed = new Map(signed.map((f) => [f.name, f]));
  const unsigned = [...files.keys()].filter((p) => p !== '.signatures.json' && !listed.has(p));
  if (unsigned.length > 0) throw new BundleError('signature_files_mismatch', `not covered by the signature: ${unsigned.join(', ')}`);
  const absent = signed.filter((f) => !files.has(f.name)).map((f) => f.name);
  if (absent.length > 0) throw new BundleError('signature_files_mismatch', `signed but missing from the bundle: ${absent.join(', ')}`);
  for (const f of signed) {
    if (!OPA_HASH_ALGORITHMS[f.algorithm]) throw new BundleError('signature_invalid', `${f.name}: unsupported hash ${f.algorithm}`);
    let digest: string;
    try {
      digest = opaFileDigest(f.name, files.get(f.name)!, f.algorithm);
    } catch {
      throw new BundleError('signature_hash_mismatch', `${f.name}: cannot be parsed to compute its digest`);
    }
    if (digest !== f.hash) {
      throw new BundleError('signature_hash_mismatch', `${f.name}: digest does not match the signature`);
    }
  }
}
