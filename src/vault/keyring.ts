import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Config } from '../config/index.js';
import { StartupError } from '../lib/startup-error.js';
import type { Logger } from '../logging/index.js';

/** A master key and its id (the first 16 hex digits of its SHA-256: names it without revealing it). */
export interface MasterKey {
  kid: string;
  key: Buffer;
}

/** The master keys this process holds: the current one seals, any of them opens. */
export interface KeyRing {
  current: MasterKey;
  byKid(kid: string): MasterKey | undefined;
  kids(): string[];
}

/** Builds a key ring from base64 keys, the first being current. Throws on a key that is not 32 bytes. */
export function keyRing(current: string, previous: readonly string[] = []): KeyRing {
  const keys = [current, ...previous].map((b64, i) => {
    const key = Buffer.from(b64.trim(), 'base64');
    if (key.length !== 32) {
      throw new StartupError(
        `${i === 0 ? 'the master key' : `previous master key #${i}`} must be 32 bytes, base64-encoded (openssl rand -base64 32)`,
      );
    }
    return { kid: createHash('sha256').update(key).digest('hex').slice(0, 16), key };
  });
  const map = new Map(keys.map((k) => [k.kid, k]));
  return { current: keys[0]!, byKid: (kid) => map.get(kid), kids: () => [...map.keys()] };
}

/**
 * The master key ring from config: `CYNODE_MASTER_KEY` when set; otherwise the key kept in
 * `masterKeyFile`, generated (256 random bits, mode 0600) on first start so a gateway with no
 * configuration still keeps credentials encrypted. Only the key id is ever logged.
 */
export function loadKeyRing(vault: Config['vault'], logger: Logger): KeyRing {
  let current = vault.masterKey;
  if (!current) {
    const file = vault.masterKeyFile;
    if (!existsSync(file)) {
      mkdirSync(dirname(file), { recursive: true });
      try {
        writeFileSync(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
        chmodSync(file, 0o600);
        logger
          .child({ component: 'vault' })
          .warn({ file }, 'generated a credential master key; keep this file safe (set CYNODE_MASTER_KEY to supply your own)');
      } catch (err) {
        // Another process created it first: use theirs.
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
          throw new StartupError(`cannot create the master key file ${file}: ${(err as Error).message}`);
      }
    }
    current = readFileSync(file, 'utf8').trim();
  }
  const ring = keyRing(current, vault.previousMasterKeys);
  logger.child({ component: 'vault' }).info({ kid: ring.current.kid, previous: ring.kids().length - 1 }, 'credential master key loaded');
  return ring;
}
