import type { Knex } from 'knex';
import { notifyRequeue } from './requeue.js';
import type { JobWaker } from './wake.js';

/**
 * Takes the leases of `nodeIds` away at once (the worker was quarantined or left) and puts
 * their jobs back in the queue, available now and whatever attempts they have left: the
 * worker was taken away, the job did not fail. Each open attempt ends as `released`. Rows
 * another transaction holds are skipped; the caller sweeps again later. Wakes polls here
 * (other replicas hear the NOTIFY). Returns how many.
 */
export async function releaseLeasesOf(
  deps: { knex: Knex; notify: boolean; waker: JobWaker },
  nodeIds: readonly string[],
  at = new Date(),
): Promise<number> {
  if (nodeIds.length === 0) return 0;
  const released = await deps.knex.transaction(async (trx) => {
    const held = (await trx('jobs')
      .where({ state: 'leased' })
      .whereIn('leased_by', nodeIds)
      .forUpdate()
      .skipLocked()
      .select('id', 'lease_id')) as { id: string; lease_id: string }[];
    if (held.length === 0) return 0;
    const error = JSON.stringify({ code: 'lease_released', message: 'the worker holding the lease was taken away', retryable: true });
    await trx('job_attempts')
      .whereIn(
        'lease_id',
        held.map((j) => j.lease_id),
      )
      .whereNull('outcome')
      .update({ outcome: 'released', ended_at: at, error });
    await trx('jobs')
      .whereIn(
        'id',
        held.map((j) => j.id),
      )
      .update({
        state: 'queued',
        available_at: at,
        lease_id: null,
        leased_by: null,
        lease_expires_at: null,
        attempt_deadline: null,
        updated_at: at,
      });
    await notifyRequeue(trx, deps.notify, deps.waker.origin, held.length);
    return held.length;
  });
  if (released > 0) deps.waker.wake(released);
  return released;
}
