import type { Knex } from 'knex';
import { backoffMs, notifyRequeue, type RetryBackoff } from './requeue.js';
import type { JobRow } from './types.js';

/** Lapsed leases one reaping pass takes on, oldest first. */
const REAP_BATCH = 500;

type Lapsed = Pick<JobRow, 'id' | 'lease_id' | 'attempts' | 'max_attempts' | 'attempt_deadline'>;

/**
 * Inside `trx`: closes the attempts of leases that lapsed before `at` (expired, or past the
 * job's timeout) and requeues their jobs with backoff, or dead-letters those out of
 * attempts. Rows another reaper holds are skipped. Returns how many were reaped and when
 * the last requeued one becomes available again, so the caller can wake polls then.
 */
export async function reapLapsed(
  trx: Knex.Transaction,
  at: Date,
  retry: RetryBackoff,
  notify: { notify: boolean; origin: string },
): Promise<{ count: number; latest: Date }> {
  const lapsed = (await trx('jobs')
    .where({ state: 'leased' })
    .andWhere('lease_expires_at', '<', at)
    .orderBy('lease_expires_at')
    .limit(REAP_BATCH)
    .forUpdate()
    .skipLocked()
    .select('id', 'lease_id', 'attempts', 'max_attempts', 'attempt_deadline')) as Lapsed[];
  let latest = at;
  for (const job of lapsed) {
    const timedOut = job.attempt_deadline !== null && new Date(job.attempt_deadline) <= at;
    const error = {
      code: timedOut ? 'attempt_timed_out' : 'lease_expired',
      message: timedOut ? 'the attempt ran past the job timeout' : 'the worker stopped renewing its lease',
      retryable: true,
    };
    await trx('job_attempts')
      .where({ lease_id: job.lease_id! })
      .whereNull('outcome')
      .update({ outcome: timedOut ? 'timed_out' : 'expired', ended_at: at, error: JSON.stringify(error) });
    const patch =
      job.attempts < job.max_attempts
        ? {
            state: 'queued',
            available_at: new Date(at.getTime() + backoffMs(retry, job.attempts)),
            lease_id: null,
            leased_by: null,
            lease_expires_at: null,
          }
        : { state: 'dead_lettered', finished_at: at };
    if ('available_at' in patch && patch.available_at && patch.available_at > latest) latest = patch.available_at;
    await trx('jobs')
      .where({ id: job.id })
      .update({ ...patch, error: JSON.stringify(error), updated_at: at });
  }
  if (lapsed.length > 0) await notifyRequeue(trx, notify.notify, notify.origin, lapsed.length);
  return { count: lapsed.length, latest };
}
