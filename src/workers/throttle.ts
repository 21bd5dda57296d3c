import type { Knex } from 'knex';

/**
 * Counts failed registration attempts per source address in a sliding window, across every
 * replica (table `psk_failures`); past the limit the source is refused (429 with Retry-After)
 * until its oldest failure ages out, whether or not its next guess would have been right. N
 * replicas together still check exactly the limit per window.
 */
export interface FailureThrottle {
  /**
   * Checks one attempt from `source` in turn: once every earlier attempt from it, on any
   * replica, has been counted. When the source is at its limit `check` is not run and the
   * answer carries the seconds to wait; otherwise `check` runs, and a null result counts as
   * a failure. A `check` that throws counts as nothing and its error is passed on.
   */
  attempt<T>(source: string, check: () => Promise<T | null>): Promise<ThrottledAttempt<T>>;
}

/** What an attempt came to: `value` (null for a failure), or a wait when the source was refused unchecked. */
export type ThrottledAttempt<T> = { value: T | null; retryAfterSeconds: 0 } | { value: null; retryAfterSeconds: number };

/** Advisory lock class of the throttle (the two-key form, so it never meets the chains' one-key locks). */
const THROTTLE_LOCK_CLASS = 7_301;
/** At most this many expired rows of other sources are swept by one attempt. */
const SWEEP_BATCH = 100;

/** A slot taken for one check (`id`), or how long a source at its limit must wait. */
type Slot = { id: string } | { waitMs: number };

/** Past this many remembered throttled sources, the expired ones are forgotten. */
const BLOCKED_SWEEP_SIZE = 10_000;

/**
 * Creates the shared throttle: `limit` failures per source within `windowMs`. Each check
 * first reserves a row under a per-source advisory lock (refused when the window already
 * holds `limit` rows), runs without holding a connection, and deletes its row when it was
 * not a failure: so concurrent attempts on any number of replicas never check more than
 * the limit. Attempts on this replica also queue in memory, one per source at a time, so a
 * burst costs the database one reservation at a time instead of a pile of waiting locks, and
 * a source found at its limit is refused from memory until its wait is over (never admitting
 * more than the database would; at most holding a source a little longer when a slot another
 * replica held turns out to be a right PSK).
 */
export function createFailureThrottle(knex: Knex, limit: number, windowMs: number): FailureThrottle {
  const queues = new Map<string, Promise<unknown>>();
  const blockedUntil = new Map<string, number>();
  const window = `${windowMs} milliseconds`;
  const block = (source: string, waitMs: number) => {
    if (blockedUntil.size >= BLOCKED_SWEEP_SIZE) for (const [s, until] of blockedUntil) if (until <= Date.now()) blockedUntil.delete(s);
    blockedUntil.set(source, Date.now() + waitMs);
  };

  const reserve = (source: string): Promise<Slot> =>
    knex.transaction(async (trx) => {
      await trx.raw('select pg_advisory_xact_lock(?, hashtext(?))', [THROTTLE_LOCK_CLASS, source]);
      await trx.raw(
        `DELETE FROM psk_failures WHERE id IN (SELECT id FROM psk_failures WHERE failed_at <= now() - ?::interval LIMIT ${SWEEP_BATCH})`,
        [window],
      );
      const { rows } = (await trx.raw(
        `SELECT count(*)::int AS n, extract(epoch FROM min(failed_at) + ?::interval - now()) * 1000 AS wait_ms
           FROM psk_failures WHERE source = ? AND failed_at > now() - ?::interval`,
        [window, source, window],
      )) as { rows: { n: number; wait_ms: string | null }[] };
      const { n, wait_ms } = rows[0]!;
      if (n >= limit) return { waitMs: Math.max(0, Number(wait_ms)) };
      const [row] = (await trx('psk_failures').insert({ source, failed_at: trx.fn.now() }).returning('id')) as { id: string }[];
      return { id: String(row!.id) };
    });

  const checked = async <T>(source: string, check: () => Promise<T | null>): Promise<ThrottledAttempt<T>> => {
    const blocked = (blockedUntil.get(source) ?? 0) - Date.now();
    if (blocked > 0) return { value: null, retryAfterSeconds: Math.max(1, Math.ceil(blocked / 1000)) };
    blockedUntil.delete(source);
    const slot = await reserve(source);
    if (!('id' in slot)) {
      block(source, slot.waitMs);
      return { value: null, retryAfterSeconds: Math.max(1, Math.ceil(slot.waitMs / 1000)) };
    }
    let value: T | null;
    try {
      value = await check();
    } catch (err) {
      await knex('psk_failures').where({ id: slot.id }).delete();
      throw err;
    }
    if (value !== null) await knex('psk_failures').where({ id: slot.id }).delete();
    return { value, retryAfterSeconds: 0 };
  };

  return {
    attempt(source, check) {
      const run = (queues.get(source) ?? Promise.resolve()).then(() => checked(source, check));
      const settled = run.catch(() => undefined);
      queues.set(source, settled);
      void settled.then(() => queues.get(source) === settled && queues.delete(source));
      return run;
    },
  };
}
