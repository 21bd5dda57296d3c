import type { Knex } from 'knex';
import { type ChainedLog, type ChainedLogOptions, createChainedLog } from '../lib/chained-log.js';
import type { Logger } from '../logging/index.js';

/** One audited MCP tool call: who (and as which agent type), for which task and job, the decision, the outcome. */
export interface ToolAuditEvent {
  request_id: string;
  at: Date;
  subject_id: string;
  agent_type: string;
  task_id: string | null;
  job_id: string | null;
  tool: string;
  outcome: 'ok' | 'denied' | 'error';
  error_code: string | null;
  decision_id: string | null;
  reasons: string[];
  revision: string | null;
  latency_ms: number | null;
}

// "tool"
const CHAIN_LOCK = 0x74_6f_6f_6c;
const COLUMNS =
  'request_id uuid, at timestamptz, subject_id text, agent_type text, task_id text, job_id text, tool text, outcome text, error_code text, ' +
  'decision_id text, reasons jsonb, revision text, latency_ms double precision';

function hashed(e: ToolAuditEvent): Record<string, unknown> {
  return { ...e, at: e.at.toISOString(), latency_ms: e.latency_ms === null ? null : e.latency_ms.toFixed(3) };
}

/** The audit trail of MCP tool calls, hash-chained and append-only; `audit verify` checks it. */
export function createToolAudit(knex: Knex, logger: Logger, options: ChainedLogOptions): ChainedLog<ToolAuditEvent> {
  const round = (e: ToolAuditEvent): ToolAuditEvent => ({
    ...e,
    latency_ms: e.latency_ms === null ? null : Math.round(e.latency_ms * 1000) / 1000,
  });
  const chain = createChainedLog<ToolAuditEvent>(
    knex,
    logger,
    {
      table: 'tool_audit',
      lockKey: CHAIN_LOCK,
      columns: COLUMNS,
      hashed,
      row: (e) => ({ ...e, at: e.at.toISOString() }),
      fromRow: (r) => {
        const { seq: _seq, prev_hash: _prev, hash: _hash, ...rest } = r;
        return hashed({
          ...(rest as unknown as ToolAuditEvent),
          at: new Date(r.at as string),
          latency_ms: r.latency_ms === null ? null : Number(r.latency_ms),
        });
      },
      unavailable: 'audit_unavailable',
    },
    options,
  );
  return { ...chain, record: (e) => chain.record(round(e)) };
}
