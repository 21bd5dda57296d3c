import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { stringify } from 'yaml';

/** Where `policy build` signs from, and the verification entry that matches. */
export interface SigningSetup {
  keyFile: string;
  keysFile: string;
  keyId: string;
  algorithm: string;
}

/**
 * On a fresh checkout neither the signing key nor the verification keys file exists: create
 * both (private key mode 0600; its public half, or the HMAC secret, under `keyId` in the OPA
 * `keys:` shape), so the default bundle is signed and verified without any setup. Returns
 * false when either file already exists: an operator's keys are never overwritten.
 */
export function ensureLocalSigningKey(setup: SigningSetup): boolean {
  if (existsSync(setup.keyFile) || existsSync(setup.keysFile)) return false;
  const { privatePem, verification } = generate(setup.algorithm);
  mkdirSync(dirname(setup.keyFile), { recursive: true });
  mkdirSync(dirname(setup.keysFile), { recursive: true });
  writeFileSync(setup.keyFile, privatePem, { mode: 0o600 });
  writeFileSync(setup.keysFile, stringify({ [setup.keyId]: { algorithm: setup.algorithm, key: verification } }), { mode: 0o600 });
  return true;
}

function generate(algorithm: string): { privatePem: string; verification: string } {
  if (algorithm.startsWith('HS')) {
    const secret = randomBytes(48).toString('base64url');
    return { privatePem: secret, verification: secret };
  }
  const pair = algorithm.startsWith('ES')
    ? generateKeyPairSync('ec', { namedCurve: { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' }[algorithm] ?? 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 3072 });
  return {
    privatePem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    verification: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}
