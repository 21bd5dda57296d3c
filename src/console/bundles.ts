import { hostname } from 'node:os';
import type { Knex } from 'knex';
import { errorMessage } from '../lib/error-message.js';
import { startPeriodic } from '../lib/periodic.js';
import type { Logger } from '../logging/index.js';
import type { ActiveBundle, PolicyEngine } from '../policy/index.js';

/** How often a replica says which bundle it runs; a replica silent for three periods is shown as gone. */
export const REPLICA_HEARTBEAT_MS = 15_000;

/** One bundle activation on one replica. */
export interface Activation {
  replica: string;
  revision: string;
  digest: string;
  source: string;
  activated_at: string;
}

/** A replica and the bundle it runs now. */
export interface ReplicaBundle {
  replica: string;
  revision: string;
  digest: string;
  activated_at: string;
  seen_at: string;
  live: boolean;
}

/** The bundle history and per-replica bundles, as recorded by every replica. */
export interface BundleRecords {
  history(limit: number): Promise<Activation[]>;
  replicas(): Promise<ReplicaBundle[]>;
  stop(): void;
}

/**
 * Records this replica's bundle activations (the one active at start, then each new one) and
 * says every {@link REPLICA_HEARTBEAT_MS} which bundle it runs, so the console can show the
 * revision and age per replica and the history of bundles. A failed write is logged, never
 * fatal: the record is for people, the engine is the truth.
 */
export function startBundleRecords(
  knex: Knex,
  engine: PolicyEngine,
  logger: Logger,
  replica = `${hostname()}:${process.pid}`,
): BundleRecords {
  const log = logger.child({ component: 'console' });
  const fail = (err: unknown) => log.warn({ err: errorMessage(err) }, 'could not record the active bundle');
  const say = (info: ActiveBundle | null | undefined, activated: boolean) => {
    if (!info) return Promise.resolve();
    const row = { replica, revision: info.revision, digest: info.digest, activated_at: info.activatedAt };
    return knex.transaction(async (trx) => {
      if (activated) await trx('bundle_activations').insert({ ...row, source: info.source });
      await trx('replica_bundles')
        .insert({ ...row, seen_at: trx.fn.now() })
        .onConflict('replica')
        .merge();
    });
  };
  void say(engine.status().active, true).catch(fail);
  const unsubscribe = engine.onActivate((info) => void say(info, true).catch(fail));
  const heartbeat = startPeriodic(() => say(engine.status().active, false), REPLICA_HEARTBEAT_MS, fail);
  return {
    async history(limit) {
      const rows = (await knex('bundle_activations')
        .orderBy('id', 'desc')
        .limit(limit)
        .select('replica', 'revision', 'digest', 'source', 'activated_at')) as (Omit<Activation, 'activated_at'> & {
        activated_at: Date;
      })[];
      return rows.map((r) => ({ ...r, activated_at: new Date(r.activated_at).toISOString() }));
    },
    async replicas() {
      const rows = (await knex('replica_bundles').orderBy('replica').select()) as {
        replica: string;
        revision: string;
        digest: string;
        activated_at: Date;
        seen_at: Date;
      }[];
      const cutoff = Date.now() - 3 * REPLICA_HEARTBEAT_MS;
      return rows.map((r) => ({
        ...r,
        activated_at: new Date(r.activated_at).toISOString(),
        seen_at: new Date(r.seen_at).toISOString(),
        live: new Date(r.seen_at).getTime() >= cutoff,
      }));
    },
    stop() {
      unsubscribe();
      heartbeat.stop();
    },
  };
}
