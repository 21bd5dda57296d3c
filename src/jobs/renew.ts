import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import type { LeaseRef, LeaseStatus, Worker } from '../workers/types.js';
import { type AttemptRow, iso, type JobRow } from './types.js';

/**
 * A heartbeat's lease half: extends every named lease that is still current and this
 * worker's (up to the attempt deadline), and says of the rest whether they were cancelled or
 * lost, and why. A lease of another worker, or named with another job, is refused outright.
 */
export async function renewLeases(
  knex: Knex,
  leaseTtlMs: number,
  now: () => Date,
  worker: Worker,
  leases: readonly LeaseRef[],
): Promise<LeaseStatus> {
  const answer: LeaseStatus = { leases: [], cancelled: [], lost: [] };
  if (leases.length === 0) return answer;
  const ids = leases.map((l) => l.lease_id);
  const attempts = (await knex('job_attempts').whereIn('lease_id', ids).select('lease_id', 'job_id', 'node_id')) as Pick<
    AttemptRow,
    'lease_id' | 'job_id' | 'node_id'
  >[];
  const byLease = new Map(attempts.map((a) => [a.lease_id, a]));
  for (const l of leases) {
    const a = byLease.get(l.lease_id);
    if (a && (a.node_id !== worker.nodeId || a.job_id !== l.job_id)) {
      throw new GatewayError('job_not_owned', `lease '${l.lease_id}' is not a lease of this worker on job '${l.job_id}'`);
    }
  }
  const at = now();
  const extended = (await knex('jobs')
    .whereIn('lease_id', ids)
    .andWhere({ state: 'leased', leased_by: worker.nodeId })
    .update({
      lease_expires_at: knex.raw('least(?::timestamptz, attempt_deadline)', [new Date(at.getTime() + leaseTtlMs)]),
      updated_at: at,
    })
    .returning(['id', 'lease_id', 'lease_expires_at'])) as Pick<JobRow, 'id' | 'lease_id' | 'lease_expires_at'>[];
  const renewed = new Set(extended.map((r) => r.lease_id));
  answer.leases = extended.map((r) => ({ job_id: r.id, lease_id: r.lease_id!, lease_expires_at: iso(r.lease_expires_at) }));
  const rest = leases.filter((l) => !renewed.has(l.lease_id));
  if (rest.length === 0) return answer;
  const jobs = (await knex('jobs')
    .whereIn(
      'id',
      rest.filter((l) => byLease.has(l.lease_id)).map((l) => l.job_id),
    )
    .select('id', 'state', 'lease_id')) as Pick<JobRow, 'id' | 'state' | 'lease_id'>[];
  const byJob = new Map(jobs.map((j) => [j.id, j]));
  for (const l of rest) {
    const job = byLease.has(l.lease_id) ? byJob.get(l.job_id) : undefined;
    if (!job) answer.lost.push({ ...l, reason: 'unknown' });
    else if (job.state === 'cancelled' && job.lease_id === l.lease_id) answer.cancelled.push(l);
    else if (job.lease_id === l.lease_id) answer.lost.push({ ...l, reason: 'finished' });
    else if (job.state === 'leased') answer.lost.push({ ...l, reason: 'reassigned' });
    else answer.lost.push({ ...l, reason: job.state === 'queued' ? 'expired' : 'finished' });
  }
  return answer;
}
