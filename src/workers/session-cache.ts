import type { Knex } from 'knex';
import { createBatcher } from '../lib/batcher.js';
import { type Row, toWorker } from './rows.js';
import type { Worker } from './types.js';

/** How long a row read from the database stands for its node on this replica. */
export const WORKER_CACHE_MS = 1000;

/** The most node ids one read carries. */
const MAX_READ_BATCH = 64;

/** A node's row as this replica last saw it, the worker it stands for, and when it was read. */
export interface SessionEntry {
  row: Row;
  worker: Worker;
  /** When the read that returned it began (ms since the epoch): its age counts from before the database answered. */
  at: number;
}

/**
 * The worker rows this replica read lately, by node id: every Worker API call needs its
 * node's row, and reads it at most once per {@link WORKER_CACHE_MS} per replica. Reads are
 * group-committed (the nodes whose rows are wanted while one read is in flight share the next
 * statement) and coalesced (callers wanting the same node while its read is in flight share
 * it). `forget` and `store` make a read in flight stale: its row still answers the calls that
 * were waiting for it, but is never remembered, so it cannot undo a newer write or an ended
 * session this replica has heard of.
 */
export interface SessionCache {
  /** The entry of `nodeId` when it was read less than {@link WORKER_CACHE_MS} ago. */
  fresh(nodeId: string): SessionEntry | undefined;
  /** Reads the stored row of `nodeId` now; remembers it unless it went stale meanwhile. */
  read(nodeId: string): Promise<SessionEntry | undefined>;
  /** Remembers a row this replica has just written: newer than any read in flight. */
  store(row: Row): SessionEntry;
  /** Drops the entry of `nodeId` and any read of it in flight. */
  forget(nodeId: string): void;
}

/** A read of one node in flight; `stale` once it may no longer be remembered. */
interface Reading {
  promise: Promise<SessionEntry | undefined>;
  stale: boolean;
}

/** Creates an empty cache over the `workers` table. */
export function createSessionCache(knex: Knex, now: () => number = Date.now): SessionCache {
  const entries = new Map<string, SessionEntry>();
  const reading = new Map<string, Reading>();
  const rows = createBatcher(async (ids: string[]) => {
    const found = (await knex('workers').whereIn('node_id', [...new Set(ids)])) as Row[];
    const byId = new Map(found.map((r) => [r.node_id, r]));
    return ids.map((id) => byId.get(id));
  }, MAX_READ_BATCH);
  const dropReading = (nodeId: string) => {
    const r = reading.get(nodeId);
    if (!r) return;
    r.stale = true;
    reading.delete(nodeId);
  };
  const entryOf = (row: Row, at: number): SessionEntry => ({ row, worker: toWorker(row), at });
  return {
    fresh(nodeId) {
      const hit = entries.get(nodeId);
      return hit && now() - hit.at < WORKER_CACHE_MS ? hit : undefined;
    },
    read(nodeId) {
      const inFlight = reading.get(nodeId);
      if (inFlight) return inFlight.promise;
      const at = now();
      const r: Reading = { stale: false, promise: Promise.resolve(undefined) };
      r.promise = rows.submit(nodeId).then(
        (row) => {
          if (reading.get(nodeId) === r) reading.delete(nodeId);
          if (!row) return undefined;
          const entry = entryOf(row, at);
          if (!r.stale) entries.set(nodeId, entry);
          return entry;
        },
        (err: unknown) => {
          if (reading.get(nodeId) === r) reading.delete(nodeId);
          throw err;
        },
      );
      reading.set(nodeId, r);
      return r.promise;
    },
    store(row) {
      dropReading(row.node_id);
      const entry = entryOf(row, now());
      entries.set(row.node_id, entry);
      return entry;
    },
    forget(nodeId) {
      dropReading(nodeId);
      entries.delete(nodeId);
    },
  };
}
