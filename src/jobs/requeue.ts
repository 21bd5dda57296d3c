import type { Knex } from 'knex';
import { JOBS_CHANNEL } from './types.js';
import { jobsNotice, type JobWaker } from './wake.js';

/** How long a failed attempt waits before the next: exponential from `baseMs`, capped at `maxMs`. */
export interface RetryBackoff {
  baseMs: number;
  maxMs: number;
}

/** Exponential backoff with jitter before attempt `attempts + 1`: half the ceiling plus up to half again. */
export function backoffMs(retry: RetryBackoff, attempts: number): number {
  const ceiling = Math.min(retry.maxMs, retry.baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

/**
 * Tells long polls on the other replicas that `count` jobs went back to the queue (when NOTIFY
 * is in use); `origin` is this replica's waker, which wakes its own polls.
 */
export async function notifyRequeue(trx: Knex | Knex.Transaction, notify: boolean, origin: string, count = 1): Promise<void> {
  if (notify) await trx.raw('select pg_notify(?, ?)', [JOBS_CHANNEL, jobsNotice(origin, count)]);
}

/** Wakes `count` polls when a job requeued with backoff becomes available (here; other replicas poll). */
export function wakeAt(waker: JobWaker, availableAt: Date, count: number): void {
  const delay = availableAt.getTime() - Date.now();
  if (delay <= 0) waker.wake(count);
  else setTimeout(() => waker.wake(count), delay).unref();
}
