import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK, type CryptoKey } from 'jose';
import type { Knex } from 'knex';
import type { Logger } from '../logging/index.js';
import { errorMessage } from '../lib/error-message.js';

/** The algorithm of every gateway-issued JWT. */
export const JWT_ALG = 'ES256';

/** This replica's current signing key. */
export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
}

/** Signing keys: private halves in this process only, public halves shared through the database. */
export interface KeyStore {
  current(): SigningKey;
  /** Retires the current key (it still verifies until `verify_until`) and starts a new one. */
  rotate(): Promise<SigningKey>;
  /** Every public key still inside its verification window, as a JWKS document. */
  jwks(): Promise<{ keys: JWK[] }>;
  close(): void;
}

/** Options of the key store. */
export interface KeyStoreOptions {
  knex: Knex;
  logger: Logger;
  /** Rotate the current key this often. */
  rotationMs: number;
  /** How long a retired key must keep verifying: the longest lifetime of a token it signed. */
  maxTokenTtlMs: number;
  now?: () => Date;
}

/**
 * Creates this replica's first key and starts rotation. Keys are ES256; the `kid` is random,
 * so replicas never collide, and a restart simply starts a new key while tokens signed by the
 * old one keep verifying through its published public half.
 */
export async function createKeyStore(options: KeyStoreOptions): Promise<KeyStore> {
  const log = options.logger.child({ component: 'keys' });
  const now = options.now ?? (() => new Date());
  // A key signs for at most rotationMs, then verifies tokens it signed for maxTokenTtlMs more.
  const lifetimeMs = options.rotationMs + options.maxTokenTtlMs;
  let jwksCache: { at: number; value: { keys: JWK[] } } | undefined;

  async function publish(): Promise<SigningKey> {
    const { publicKey, privateKey } = await generateKeyPair(JWT_ALG, { extractable: false });
    const kid = randomUUID();
    const jwk = { ...(await exportJWK(publicKey)), kid, alg: JWT_ALG, use: 'sig' };
    const created = now();
    await options.knex('signing_keys').insert({
      kid,
      alg: JWT_ALG,
      public_jwk: JSON.stringify(jwk),
      created_at: created,
      verify_until: new Date(created.getTime() + lifetimeMs),
    });
    jwksCache = undefined;
    log.info({ kid }, 'signing key published');
    return { kid, privateKey };
  }

  let key = await publish();
  const timer = setInterval(() => {
    store.rotate().catch((err: unknown) => log.error({ err: errorMessage(err) }, 'key rotation failed; keeping the current key'));
  }, options.rotationMs);
  timer.unref();

  const store: KeyStore = {
    current: () => key,
    async rotate() {
      const old = key;
      key = await publish();
      const retired = now();
      await options
        .knex('signing_keys')
        .where({ kid: old.kid })
        .update({ retired_at: retired, verify_until: new Date(retired.getTime() + options.maxTokenTtlMs) });
      await options
        .knex('signing_keys')
        .where('verify_until', '<', new Date(retired.getTime() - 86_400_000))
        .delete();
      return key;
    },
    async jwks() {
      // Cached briefly: JWKS is read on every verification miss and by every target service.
      if (jwksCache && Date.now() - jwksCache.at < 1000) return jwksCache.value;
      const rows = (await options
        .knex('signing_keys')
        .where('verify_until', '>', now())
        .orderBy('created_at', 'desc')
        .select('public_jwk')) as {
        public_jwk: JWK;
      }[];
      const value = { keys: rows.map((r) => r.public_jwk) };
      jwksCache = { at: Date.now(), value };
      return value;
    },
    close: () => clearInterval(timer),
  };
  return store;
}
