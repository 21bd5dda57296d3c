import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { GatewayError } from '../errors/index.js';
import type { KeyRing } from './keyring.js';

/** A sealed secret as stored: the data key wrapped by the master key `kid`, and the secret sealed by the data key. */
export interface Envelope {
  kid: string;
  wrappedKey: Buffer;
  sealedSecret: Buffer;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** AES-256-GCM: iv ‖ ciphertext ‖ tag, authenticated together with `aad`. */
function seal(key: Buffer, plaintext: Buffer, aad: string): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

function open(key: Buffer, sealed: Buffer, aad: string): Buffer {
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new Error('sealed value too short');
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES));
  decipher.setAAD(Buffer.from(aad, 'utf8'));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
}

// What each layer is bound to: a sealed value moved to another row, version or key id
// does not open.
const secretAad = (id: string, version: number) => `cynode-credential:${id}:v${version}`;
const keyAad = (id: string, kid: string) => `cynode-data-key:${id}:${kid}`;

/** Seals `secret` for credential `id` at `version` under a fresh data key wrapped by the current master key. */
export function sealSecret(ring: KeyRing, id: string, version: number, secret: string): Envelope {
  const dataKey = randomBytes(32);
  try {
    return {
      kid: ring.current.kid,
      wrappedKey: seal(ring.current.key, dataKey, keyAad(id, ring.current.kid)),
      sealedSecret: seal(dataKey, Buffer.from(secret, 'utf8'), secretAad(id, version)),
    };
  } finally {
    dataKey.fill(0);
  }
}

/** Opens a stored envelope; any failure (unknown kid, tampering, wrong key) is `vault_unavailable`, never a partial secret. */
export function openSecret(ring: KeyRing, id: string, version: number, envelope: Envelope): string {
  const master = ring.byKid(envelope.kid);
  if (!master)
    throw new GatewayError(
      'vault_unavailable',
      `credential ${id} is sealed under master key ${envelope.kid}, which this gateway does not hold`,
    );
  let dataKey: Buffer | undefined;
  try {
    dataKey = open(master.key, envelope.wrappedKey, keyAad(id, envelope.kid));
    return open(dataKey, envelope.sealedSecret, secretAad(id, version)).toString('utf8');
  } catch {
    throw new GatewayError('vault_unavailable', `credential ${id} could not be opened (tampered, or sealed under another key)`);
  } finally {
    dataKey?.fill(0);
  }
}

/** Re-wraps the data key under the current master key; the sealed secret itself is untouched. */
export function rewrapKey(ring: KeyRing, id: string, envelope: Envelope): Envelope {
  if (envelope.kid === ring.current.kid) return envelope;
  const master = ring.byKid(envelope.kid);
  if (!master)
    throw new GatewayError(
      'vault_unavailable',
      `credential ${id} is sealed under master key ${envelope.kid}, which this gateway does not hold`,
    );
  let dataKey: Buffer | undefined;
  try {
    dataKey = open(master.key, envelope.wrappedKey, keyAad(id, envelope.kid));
    return {
      kid: ring.current.kid,
      wrappedKey: seal(ring.current.key, dataKey, keyAad(id, ring.current.kid)),
      sealedSecret: envelope.sealedSecret,
    };
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw new GatewayError('vault_unavailable', `credential ${id} could not be re-wrapped (tampered, or sealed under another key)`);
  } finally {
    dataKey?.fill(0);
  }
}
