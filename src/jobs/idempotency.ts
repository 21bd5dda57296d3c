import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { canonicalJson } from '../lib/canonical-json.js';

/** An answer worth replaying: status and body. */
export interface StoredAnswer {
  status: number;
  body: unknown;
}

/** How long an in-flight key is held before a crashed request's key may be taken over. */
const IN_FLIGHT_HOLD_MS = 30_000;
const KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * Runs `work` at most once per (scope, key). The key is claimed first (committed on its
 * own), so a concurrent duplicate sees it in flight (409) instead of waiting; a finished
 * key replays the stored answer; the same key with a different body is a client bug (422).
 * `work` receives a transaction and its answer is stored in that same transaction, so the
 * effect and the stored answer commit together. A key left in flight by a crash is taken
 * over after IN_FLIGHT_HOLD_MS.
 */
export async function idempotent(
  knex: Knex,
  scope: string,
  key: string | undefined,
  request: unknown,
  work: (trx: Knex.Transaction) => Promise<StoredAnswer>,
): Promise<StoredAnswer & { replayed: boolean }> {
  key = checkIdempotencyKey(key);
  const digest = requestDigest(request);
  const now = new Date();
  const lockedUntil = new Date(now.getTime() + IN_FLIGHT_HOLD_MS);

  const claimed = (await knex('idempotency_keys')
    .insert({ scope, key, request_sha256: digest, state: 'in_flight', locked_until: lockedUntil, created_at: now })
    .onConflict(['scope', 'key'])
    .ignore()
    .returning('key')) as unknown[];
  if (claimed.length === 0) {
    const row = (await knex('idempotency_keys').where({ scope, key }).first()) as
      { request_sha256: string; state: string; status: number; response: unknown; locked_until: Date } | undefined;
    if (!row) throw new GatewayError('idempotency_in_flight', 'a request with this Idempotency-Key is in flight; retry shortly');
    if (row.request_sha256 !== digest)
      throw new GatewayError('idempotency_key_reused', 'this Idempotency-Key was used with a different request body');
    if (row.state === 'done') return { status: row.status, body: row.response, replayed: true };
    // In flight: another request is working on it, unless it died holding the key.
    const taken = await knex('idempotency_keys')
      .where({ scope, key, state: 'in_flight' })
      .andWhere('locked_until', '<', now)
      .update({ locked_until: lockedUntil });
    if (taken === 0)
      throw new GatewayError('idempotency_in_flight', 'a request with this Idempotency-Key is in flight; retry shortly', {
        retry_after_s: 1,
      });
  }
  try {
    return await knex.transaction(async (trx) => {
      const answer = await work(trx);
      await trx('idempotency_keys')
        .where({ scope, key })
        .update({ state: 'done', status: answer.status, response: JSON.stringify(answer.body) });
      return { ...answer, replayed: false };
    });
  } catch (err) {
    // Nothing was done: free the key so the client's retry runs the work.
    await knex('idempotency_keys')
      .where({ scope, key, state: 'in_flight' })
      .delete()
      .catch(() => undefined);
    throw err;
  }
}

/** The key itself, or a 400 saying what is wrong with it. */
export function checkIdempotencyKey(key: string | undefined): string {
  if (!key) throw new GatewayError('idempotency_key_required', 'send an Idempotency-Key header');
  if (!KEY.test(key)) throw new GatewayError('bad_request', 'the Idempotency-Key must be 1-255 printable ASCII characters');
  return key;
}

/** The digest that tells a repeated request from a different one under the same key. */
export function requestDigest(request: unknown): string {
  return createHash('sha256').update(canonicalJson(request)).digest('hex');
}
