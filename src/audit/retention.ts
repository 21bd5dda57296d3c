import type { Knex } from 'knex';

/**
 * How long finished budget reservations (settled, released, expired, refused) are kept. A
 * reservation's call id is also what refuses a replayed forward token across replicas, so
 * this stays far longer than any forward token or reservation lives.
 */
export const RESERVATION_RETENTION_MS = 7 * 86_400_000;

/** At most this many rows go per reaper run, so one run never holds the table long. */
const PRUNE_BATCH = 5_000;

/**
 * Deletes finished budget reservations older than {@link RESERVATION_RETENTION_MS} (refused
 * attempts among them); held and pending ones are never touched. The egress reaper calls it
 * on every run; returns how many went.
 */
export async function pruneFinishedReservations(knex: Knex, nowMs: number): Promise<number> {
  const cutoff = new Date(nowMs - RESERVATION_RETENTION_MS);
  return knex('budget_reservations')
    .whereIn(
      'call_id',
      knex('budget_reservations')
        .whereIn('state', ['settled', 'released', 'expired', 'refused'])
        .andWhere('created_at', '<', cutoff)
        .limit(PRUNE_BATCH)
        .select('call_id'),
    )
    .delete();
}
