import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK, type CryptoKey } from 'jose';
import type { Knex } from 'knex';
import type { Logger } from '../logging/index.js';
import { errorMessage } from '../lib/error-message.js';
import { createLogThrottle } from '../lib/log-throttle.js';
import { startPeriodic } from '../lib/periodic.js';
import { keyGeneration } from './generation.js';

/** The algorithm of every gateway-issued JWT. */
export const JWT_ALG = 'ES256';

/** A signing key: what a JWT is signed with. */
export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
}

/** This replica's current signing key, with the public half it published (checkpoints carry it). */
export interface PublishedKey extends SigningKey {
  publicJwk: JWK;
}

/**
 * Signing keys: private halves in this process only, public halves shared through the
 * database, and one key generation shared by the fleet so that a rotation anywhere is a
 * rotation everywhere.
 */
export interface KeyStore {
  current(): PublishedKey;
  /**
   * Rotates the fleet: starts a new key generation, tells every replica (NOTIFY), and starts
   * this replica's new key. Each retired key still verifies until `verify_until`.
   */
  rotate(): Promise<PublishedKey>;
  /** Rotates this replica when the fleet has moved to a newer generation (NOTIFY handler, poller); never throws. */
  sync(): Promise<void>;
  /**
   * Every public key still inside its verification window, as a JWKS document; cached for a
   * second unless `fresh` (a token with an unknown kid: another replica may just have rotated).
   */
  jwks(fresh?: boolean): Promise<{ keys: JWK[] }>;
  close(): void;
}

/** Options of the key store. */
export interface KeyStoreOptions {
  knex: Knex;
  logger: Logger;
  /** Rotate the fleet's keys this often. */
  rotationMs: number;
  /** How long a retired key must keep verifying: the longest lifetime of a token it signed. */
  maxTokenTtlMs: number;
  /** Whether replicas hear each other (PostgreSQL NOTIFY; default false): without it they catch up by polling. */
  notify?: boolean;
  now?: () => Date;
}

/** How often a replica looks at the fleet's generation besides NOTIFY (and whether the schedule is due). */
const SYNC_INTERVAL_MS = 5_000;

/** Generates a new non-extractable key pair and publishes its public half, verifying for `lifetimeMs`. */
async function publishKey(knex: Knex, created: Date, lifetimeMs: number): Promise<PublishedKey> {
  const { publicKey, privateKey } = await generateKeyPair(JWT_ALG, { extractable: false });
  const kid = randomUUID();
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: JWT_ALG, use: 'sig' };
  await knex('signing_keys').insert({
    kid,
    alg: JWT_ALG,
    public_jwk: JSON.stringify(publicJwk),
    created_at: created,
    verify_until: new Date(created.getTime() + lifetimeMs),
  });
  return { kid, privateKey, publicJwk };
}

/** Retires `kid`: it verifies `maxTokenTtlMs` more; keys past their window for a day are deleted. */
async function retireKey(knex: Knex, kid: string, retired: Date, maxTokenTtlMs: number): Promise<void> {
  await knex('signing_keys')
    .where({ kid })
    .update({ retired_at: retired, verify_until: new Date(retired.getTime() + maxTokenTtlMs) });
  await knex('signing_keys')
    .where('verify_until', '<', new Date(retired.getTime() - 86_400_000))
    .delete();
}

/**
 * Creates this replica's first key and follows the fleet's key generation. Keys are ES256 and
 * non-extractable; the `kid` is random, so replicas never collide, and a restart simply
 * starts a new key while tokens signed by the old one keep verifying through its published
 * public half. Rotations run one at a time, so a NOTIFY arriving during this replica's own
 * rotation does not rotate twice.
 */
export async function createKeyStore(options: KeyStoreOptions): Promise<KeyStore> {
  const log = options.logger.child({ component: 'keys' });
  const now = options.now ?? (() => new Date());
  const generations = keyGeneration(options.knex, options.notify ?? false);
  // A key signs for at most rotationMs (plus a sync interval), then verifies tokens it signed for maxTokenTtlMs more.
  const lifetimeMs = options.rotationMs + SYNC_INTERVAL_MS + options.maxTokenTtlMs;
  let jwksCache: { at: number; value: { keys: JWK[] } } | undefined;

  const publish = async () => {
    const published = await publishKey(options.knex, now(), lifetimeMs);
    jwksCache = undefined;
    log.info({ kid: published.kid }, 'signing key published');
    return published;
  };

  /** Replaces the current key by a new one of `next`, retiring the old. */
  async function replace(next: number): Promise<void> {
    const old = key;
    key = await publish();
    generation = next;
    await retireKey(options.knex, old.kid, now(), options.maxTokenTtlMs);
  }

  let turn: Promise<unknown> = Promise.resolve();
  /** Moves this replica to generation `target` unless it is there already; one move at a time. */
  const catchUp = (target: number): Promise<PublishedKey> => {
    const run = turn.then(async () => {
      if (target > generation) await replace(target);
      return key;
    });
    turn = run.catch(() => undefined);
    return run;
  };

  let generation = await generations.read();
  let key = await publish();
  // Checked every few seconds: while the database is down, logged once per interval, and its end once.
  const failures = createLogThrottle(log, { level: 'error' });
  const sync = async () => {
    try {
      const due = await generations.bumpIfDue(options.rotationMs);
      await catchUp(due ?? (await generations.read()));
      failures.recovered('key rotation check works again');
    } catch (err) {
      failures.failure({ err: errorMessage(err) }, 'key rotation check failed; keeping the current key');
    }
  };
  const poller = startPeriodic(sync, Math.min(SYNC_INTERVAL_MS, options.rotationMs), () => undefined);

  return {
    current: () => key,
    rotate: async () => catchUp(await generations.bump()),
    sync,
    async jwks(fresh = false) {
      // Cached briefly: JWKS is read on every verification miss and by every target service.
      if (!fresh && jwksCache && Date.now() - jwksCache.at < 1000) return jwksCache.value;
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
    close: () => poller.stop(),
  };
}
