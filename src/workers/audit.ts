import type { Knex } from 'knex';
import { type ChainedLog, type ChainedLogOptions, createChainedLog } from '../lib/chained-log.js';
import type { Logger } from '../logging/index.js';

/** One audited change of a node's standing: quarantined or released, by whom and why. */
export interface WorkerAuditEvent {
  event_id: string;
  at: Date;
  node_id: string;
  action: 'quarantine' | 'release';
  reason: string | null;
  actor: string;
}

// "wrkr"
const CHAIN_LOCK = 0x77_72_6b_72;
const COLUMNS = 'event_id uuid, at timestamptz, node_id text, action text, reason text, actor text';

function hashed(e: WorkerAuditEvent): Record<string, unknown> {
  return { ...e, at: e.at.toISOString() };
}

/** The audit trail of quarantines and releases (`worker_audit`), hash-chained and append-only. */
export function createWorkerAudit(knex: Knex, logger: Logger, options: ChainedLogOptions): ChainedLog<WorkerAuditEvent> {
  return createChainedLog<WorkerAuditEvent>(
    knex,
    logger,
    {
      table: 'worker_audit',
      lockKey: CHAIN_LOCK,
      columns: COLUMNS,
      hashed,
      row: (e) => ({ ...e, at: e.at.toISOString() }),
      fromRow: (r) => {
        const { seq: _seq, prev_hash: _prev, hash: _hash, ...rest } = r;
        return hashed({ ...(rest as unknown as WorkerAuditEvent), at: new Date(r.at as string) });
      },
      unavailable: 'audit_unavailable',
    },
    options,
  );
}
