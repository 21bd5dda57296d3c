import type { Knex } from 'knex';
import { createChainedLog, type ChainedLog, type ChainedLogOptions } from '../lib/chained-log.js';
import type { Logger } from '../logging/index.js';
import type { Usage } from './pricing.js';

/** One audited `api.call`: who, for which task, what was asked and served, the decision, tokens, cost and timings. */
export interface AuditEvent {
  request_id: string;
  gate: 'gateway' | 'egress';
  at: Date;
  subject_kind: string;
  subject_id: string;
  task_id: string | null;
  job_id: string | null;
  user_id: string | null;
  provider: string | null;
  operation: string | null;
  model_requested: string | null;
  model_served: string | null;
  stream: boolean | null;
  outcome: 'ok' | 'denied' | 'error';
  error_code: string | null;
  decision_id: string | null;
  reasons: string[];
  revision: string | null;
  credential_id: string | null;
  tokens: Usage | null;
  reserved_usd: number | null;
  cost_usd: number | null;
  price_version: string | null;
  attempts: number | null;
  latency_ms: number | null;
  ttft_ms: number | null;
}

/** The audit trail of API Egress, hash-chained like the decision log and verified by `audit verify`. */
export interface AuditLog extends ChainedLog<AuditEvent> {
  list(filter: { taskId?: string; requestId?: string; limit: number; afterSeq?: number }): Promise<(AuditEvent & { seq: number })[]>;
}

// "audi"
const CHAIN_LOCK = 0x61_75_64_69;
const COLUMNS =
  'request_id uuid, gate text, at timestamptz, subject_kind text, subject_id text, task_id text, job_id text, user_id text, provider text, ' +
  'operation text, model_requested text, model_served text, stream boolean, outcome text, error_code text, decision_id text, reasons jsonb, ' +
  'revision text, credential_id uuid, tokens jsonb, reserved_usd numeric, cost_usd numeric, price_version text, attempts integer, ' +
  'latency_ms double precision, ttft_ms double precision';
const FIELDS = COLUMNS.split(', ').map((c) => c.split(' ')[0]!) as (keyof AuditEvent)[];
const NUMERIC: readonly string[] = ['reserved_usd', 'cost_usd', 'latency_ms', 'ttft_ms'];

// Everything in the row is hashed; numbers as the database gives them back (numeric at 6
// decimals, doubles at 3), times at ms precision.
function hashed(e: AuditEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of FIELDS) {
    const v = e[f];
    if (f === 'at') out.at = (v as Date).toISOString();
    else if (NUMERIC.includes(f)) out[f] = v === null || v === undefined ? null : Number(v).toFixed(f.endsWith('_usd') ? 6 : 3);
    else out[f] = v ?? null;
  }
  return out;
}

function fromRow(r: Record<string, unknown>): AuditEvent {
  const e = { ...r } as Record<string, unknown>;
  e.at = new Date(r.at as string);
  for (const f of NUMERIC) e[f] = r[f] === null ? null : Number(r[f]);
  return e as unknown as AuditEvent;
}

export function createAuditLog(knex: Knex, logger: Logger, options: ChainedLogOptions): AuditLog {
  const round = (e: AuditEvent): AuditEvent => ({
    ...e,
    latency_ms: e.latency_ms === null ? null : Math.round(e.latency_ms * 1000) / 1000,
    ttft_ms: e.ttft_ms === null ? null : Math.round(e.ttft_ms * 1000) / 1000,
  });
  const chain = createChainedLog<AuditEvent>(
    knex,
    logger,
    {
      table: 'api_audit',
      lockKey: CHAIN_LOCK,
      columns: COLUMNS,
      // Stored as hashed: the numbers it covers as text read into their numeric and double columns.
      hashed,
      fromRow: (r) => hashed(fromRow(r)),
      unavailable: 'audit_unavailable',
    },
    options,
  );
  return {
    ...chain,
    record: (e) => chain.record(round(e)),
    async list({ taskId, requestId, limit, afterSeq }) {
      const q = knex('api_audit').orderBy('seq', 'asc').limit(limit);
      if (taskId) q.where({ task_id: taskId });
      if (requestId) q.where({ request_id: requestId });
      if (afterSeq !== undefined) q.where('seq', '>', afterSeq);
      const rows = (await q.select()) as Record<string, unknown>[];
      return rows.map((r) => ({ ...fromRow(r), seq: Number(r.seq) }));
    },
  };
}

/** An audit record with nothing known yet but who asked; the gates fill it in as they go. */
export function auditEvent(
  requestId: string,
  gate: AuditEvent['gate'],
  known: Partial<AuditEvent> & Pick<AuditEvent, 'subject_kind' | 'subject_id'>,
): AuditEvent {
  return {
    request_id: requestId,
    gate,
    at: new Date(),
    task_id: null,
    job_id: null,
    user_id: null,
    provider: null,
    operation: null,
    model_requested: null,
    model_served: null,
    stream: null,
    outcome: 'denied',
    error_code: null,
    decision_id: null,
    reasons: [],
    revision: null,
    credential_id: null,
    tokens: null,
    reserved_usd: null,
    cost_usd: null,
    price_version: null,
    attempts: null,
    latency_ms: null,
    ttft_ms: null,
    ...known,
  };
}
