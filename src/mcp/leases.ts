import type { Knex } from 'knex';
import { LEASES_CHANNEL } from '../jobs/types.js';

export { LEASES_CHANNEL };

/** The longest a looked-up lease is answered from memory (the backstop when an announcement is lost). */
export const LEASE_REUSE_MS = 1000;

/** A caller's live lease: the job, its task, and when the lease runs out as it was read. */
export interface LiveLease {
  jobId: string;
  taskId: string;
  expiresAtMs: number;
}

/** How a caller's live lease is found: by its job, or by the task it is for. */
export type LeaseKey = { jobId: string } | { taskId: string };

/** Finds a node's live lease; a lease found is remembered for a moment, a lease not found never is. */
export interface LeaseLookup {
  find(nodeId: string, key: LeaseKey): Promise<LiveLease | undefined>;
  /** Forgets what is remembered of `nodeId`'s leases, or of every node's with none (a lease ended; the listener reconnected). */
  ended(nodeId?: string): void;
}

/** What the lookup needs: the database, and whether lease ends reach this replica right now. */
export interface LeaseLookupDeps {
  knex: Knex;
  /** True while this replica hears {@link LEASES_CHANNEL} (its LISTEN connection is up); false: nothing is remembered. */
  listening: () => boolean;
  /** How long a lease found is reused (at most {@link LEASE_REUSE_MS}). */
  reuseMs?: number;
  now?: () => number;
}

// One statement text each, so the driver sends the same two texts every time and no query builder runs per call.
const BY_JOB =
  "select id, task_id, lease_expires_at from jobs where leased_by = ? and state = 'leased' and lease_expires_at > ? and id = ? limit 1";
const BY_TASK =
  "select id, task_id, lease_expires_at from jobs where leased_by = ? and state = 'leased' and lease_expires_at > ? and task_id = ? limit 1";

// Nodes whose leases are remembered at most; past this, the oldest node's go first.
const MAX_NODES = 10_000;

/** A node's remembered leases, and the reads of its leases in flight (calls that miss at once share one). */
interface Bucket {
  leases: Map<string, LiveLease & { until: number }>;
  reading: Map<string, Promise<LiveLease | undefined>>;
}

/**
 * The live-lease lookup of tools/call. A lease found is answered again for at most `reuseMs`
 * and never past the expiry it was read with, and only while this replica listens to lease
 * ends: every end (result, cancel, requeue, release on deregistration or quarantine) is
 * announced on {@link LEASES_CHANNEL} by a trigger and drops the node's entries here at once.
 * A read that overlapped an announcement for its node, or a reconnect, is not remembered
 * (it may predate the end), and no call that came after the announcement joins it. With the
 * listener down every call reads the database.
 */
export function createLeaseLookup(deps: LeaseLookupDeps): LeaseLookup {
  const reuseMs = Math.min(deps.reuseMs ?? LEASE_REUSE_MS, LEASE_REUSE_MS);
  const now = deps.now ?? Date.now;
  // Per node, its remembered leases. An announcement replaces the node's bucket, so a read
  // still holding the old one (it began before the end) cannot put its answer back.
  const buckets = new Map<string, Bucket>();
  const bucketOf = (nodeId: string): Bucket => {
    let bucket = buckets.get(nodeId);
    if (!bucket) {
      if (buckets.size >= MAX_NODES) buckets.delete(buckets.keys().next().value!);
      bucket = { leases: new Map(), reading: new Map() };
      buckets.set(nodeId, bucket);
    }
    return bucket;
  };
  const read = async (nodeId: string, key: LeaseKey, t: number): Promise<LiveLease | undefined> => {
    const { rows } = (await deps.knex.raw('jobId' in key ? BY_JOB : BY_TASK, [
      nodeId,
      new Date(t),
      'jobId' in key ? key.jobId : key.taskId,
    ])) as { rows: { id: string; task_id: string; lease_expires_at: Date }[] };
    const row = rows[0];
    return row && { jobId: row.id, taskId: row.task_id, expiresAtMs: new Date(row.lease_expires_at).getTime() };
  };

  return {
    async find(nodeId, key) {
      const t = now();
      if (!deps.listening()) return read(nodeId, key, t);
      const name = 'jobId' in key ? `j:${key.jobId}` : `t:${key.taskId}`;
      const bucket = bucketOf(nodeId);
      const hit = bucket.leases.get(name);
      if (hit && hit.until > t && hit.expiresAtMs > t) return { jobId: hit.jobId, taskId: hit.taskId, expiresAtMs: hit.expiresAtMs };
      if (hit) bucket.leases.delete(name);
      let reading = bucket.reading.get(name);
      if (!reading) {
        reading = read(nodeId, key, t).finally(() => bucket.reading.delete(name));
        bucket.reading.set(name, reading);
        const lease = await reading;
        if (lease && buckets.get(nodeId) === bucket && deps.listening()) bucket.leases.set(name, { ...lease, until: t + reuseMs });
      }
      const lease = await reading;
      return lease && { ...lease };
    },
    ended(nodeId) {
      if (nodeId === undefined) buckets.clear();
      else buckets.delete(nodeId);
    },
  };
}
