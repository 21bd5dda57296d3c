import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import type { ChainedLog } from '../lib/chained-log.js';
import type { Logger } from '../logging/index.js';
import type { WorkerAuditEvent } from './audit.js';
import type { QuarantineSet } from './quarantine-set.js';
import { type Row, toWorker } from './rows.js';
import type { Worker } from './types.js';

/** Quarantine and release of a node (`POST /v1/workers/{node_id}/quarantine|release`). */
export interface QuarantineService {
  /**
   * Ends the node's session on every replica, refuses its tokens and registrations
   * (`node_quarantined`) until released, and requeues its leases at once. Quarantining a
   * quarantined node changes nothing and answers its current state.
   */
  quarantine(nodeId: string, reason: string, actor: string): Promise<Worker>;
  /** Lets the node register again (its old session stays ended). Releasing a free node changes nothing. */
  release(nodeId: string, actor: string): Promise<Worker>;
}

/** What quarantine needs: the database, the set every replica checks, the lease release, the audit trail. */
export interface QuarantineDeps {
  knex: Knex;
  logger: Logger;
  quarantined: QuarantineSet;
  releaseLeases: (nodeIds: readonly string[]) => Promise<number>;
  announce: (trx: Knex | Knex.Transaction, event: string) => Promise<void>;
  audit: ChainedLog<WorkerAuditEvent>;
  /** Drops a node's cached row, so this replica reads the new state at once. */
  forget: (nodeId: string) => void;
  now?: () => Date;
}

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/** Creates the quarantine service; every change is announced on the workers channel and audited in `worker_audit`. */
export function createQuarantineService(deps: QuarantineDeps): QuarantineService {
  const log = deps.logger.child({ component: 'quarantine' });
  const now = deps.now ?? (() => new Date());

  /** Applies `patch` to a node whose quarantine state is not yet `to`; answers the row and whether it changed. */
  const change = async (nodeId: string, to: boolean, patch: (at: Date) => Record<string, unknown>) => {
    if (!NODE_ID.test(nodeId)) throw new GatewayError('worker_not_found', 'no worker with this node id');
    const at = now();
    const result = await deps.knex.transaction(async (trx) => {
      const row = (await trx('workers').where({ node_id: nodeId }).forUpdate().first()) as Row | undefined;
      if (!row) throw new GatewayError('worker_not_found', `no worker with node id '${nodeId}'`);
      if ((row.quarantined_at !== null) === to) return { row, changed: false };
      const [updated] = (await trx('workers').where({ node_id: nodeId }).update(patch(at)).returning('*')) as Row[];
      await deps.announce(trx, `${to ? 'quarantine' : 'release'}:${nodeId}`);
      return { row: updated!, changed: true };
    });
    deps.forget(nodeId);
    return { ...result, at };
  };

  const audit = async (event: Omit<WorkerAuditEvent, 'event_id'>) => {
    await deps.audit.record({ event_id: randomUUID(), ...event });
    await deps.audit.flush();
  };

  return {
    async quarantine(nodeId, reason, actor) {
      const { row, changed, at } = await change(nodeId, true, (t) => ({
        quarantined_at: t,
        quarantine_reason: reason,
        quarantined_by: actor,
        session_ended_at: deps.knex.raw('coalesce(session_ended_at, ?)', [t]),
        held_until: t,
      }));
      deps.quarantined.add(nodeId);
      if (!changed) return toWorker(row);
      const released = await deps.releaseLeases([nodeId]);
      await audit({ at, node_id: nodeId, action: 'quarantine', reason, actor });
      log.warn({ nodeId, actor, released }, 'worker quarantined');
      return toWorker(row);
    },
    async release(nodeId, actor) {
      const { row, changed, at } = await change(nodeId, false, () => ({
        quarantined_at: null,
        quarantine_reason: null,
        quarantined_by: null,
      }));
      deps.quarantined.delete(nodeId);
      if (!changed) return toWorker(row);
      await audit({ at, node_id: nodeId, action: 'release', reason: null, actor });
      log.info({ nodeId, actor }, 'worker released from quarantine');
      return toWorker(row);
    },
  };
}
