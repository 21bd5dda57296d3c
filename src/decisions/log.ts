import type { Knex } from 'knex';
import { CanonicalText } from '../lib/canonical-json.js';
import { type ChainStart, createChainedLog } from '../lib/chained-log.js';
import type { ChainBreak } from '../lib/hash-chain.js';
import type { Logger } from '../logging/index.js';

/** One decision as OPA's decision log shapes it (input already masked). */
export interface DecisionEvent {
  decision_id: string;
  path: string;
  input: unknown;
  /** The input's canonical JSON when the recorder already made it (`storableInput`): hashed and stored as it is. */
  inputJson?: string;
  result?: unknown;
  error?: { code: string; message: string };
  erased: string[];
  revision: string | null;
  bundle_digest: string | null;
  requested_by: string | null;
  timestamp: Date;
  eval_ns: number;
}

/** Options of the decision log writer. */
export interface DecisionLogOptions {
  bufferSize: number;
  flushIntervalMs: number;
  enqueueTimeoutMs: number;
}

/** The append-only, hash-chained decision log. */
export interface DecisionLog {
  /**
   * Queues a decision for writing. Waits while the buffer is full and, past the enqueue
   * timeout, throws `decision_log_unavailable`: a decision that cannot be recorded is never
   * dropped silently, the request fails instead.
   */
  record(event: DecisionEvent): Promise<void>;
  /** Writes everything queued; used by shutdown and tests. */
  flush(): Promise<void>;
  get(decisionId: string): Promise<DecisionEvent | undefined>;
  /** Recomputes the whole chain (from a prune cut, when given); returns the first break or undefined. */
  verify(from?: ChainStart): Promise<{ rows: number; break: ChainBreak | undefined }>;
  /** Decisions waiting in memory (what a crash right now would lose). */
  pending(): number;
  /**
   * Calls `listener` with every decision once it is queued for writing (the decision-log export
   * feeds on this). Listeners run synchronously on the request path, so they only enqueue; one
   * that throws is ignored, never failing the decision. Returns the unsubscribe.
   */
  onRecord(listener: (event: DecisionEvent) => void): () => void;
  /** Reads stored decisions in batches, oldest first (see `scanDecisions`). */
  scan(filter: DecisionScan): AsyncIterable<DecisionEvent[]>;
  close(): Promise<void>;
}

// One lock key for the chain's tail ("decl").
const CHAIN_LOCK = 0x64_65_63_6c;
const COLUMNS =
  'decision_id uuid, path text, input jsonb, result jsonb, error jsonb, erased jsonb, revision text, bundle_digest text, ' +
  'requested_by text, timestamp timestamptz, eval_ns bigint';

/** Creates the writer; a timer flushes the buffer every `flushIntervalMs`. */
export function createDecisionLog(knex: Knex, logger: Logger, options: DecisionLogOptions): DecisionLog {
  const chain = createChainedLog<DecisionEvent>(
    knex,
    logger,
    {
      table: 'decision_log',
      lockKey: CHAIN_LOCK,
      columns: COLUMNS,
      // Stored as hashed: eval_ns, hashed as a string (bigint-safe), reads into its bigint column.
      hashed: hashedFields,
      fromRow: (r) => hashedFields(fromRow(r as unknown as Row)),
      unavailable: 'decision_log_unavailable',
    },
    options,
  );
  const listeners = new Set<(event: DecisionEvent) => void>();
  return {
    async record(event) {
      await chain.record(event);
      for (const listener of listeners) {
        try {
          listener(event);
        } catch {
          // A copy for elsewhere never fails the recorded decision.
        }
      }
    },
    onRecord(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    flush: () => chain.flush(),
    async get(decisionId) {
      const row = (await knex('decision_log').where({ decision_id: decisionId }).first()) as Row | undefined;
      return row && fromRow(row);
    },
    verify: (from) => chain.verify(from),
    pending: () => chain.pending(),
    scan: (filter) => scanDecisions(knex, filter),
    close: () => chain.close(),
  };
}

/** Which stored decisions a scan reads. */
export interface DecisionScan {
  /** Only decisions made at or after this instant. */
  since: Date;
  /** Only decisions on this entrypoint. */
  path?: string;
  /** Rows per query. */
  batchSize: number;
  /** Stop after this many decisions. */
  limit?: number;
}

/**
 * Reads the decision log oldest first, `batchSize` rows per query, paging by `seq` (keyset:
 * each query starts after the last row of the one before), so a scan of any length holds one
 * batch in memory and sees a consistent order while new decisions are appended behind it.
 */
export async function* scanDecisions(knex: Knex, filter: DecisionScan): AsyncGenerator<DecisionEvent[]> {
  // The window's first row, found by the timestamp index; rows are appended in batches, so a
  // later row may still carry an earlier timestamp and each page keeps the timestamp filter.
  const first = (await knex('decision_log').where('timestamp', '>=', filter.since).min({ seq: 'seq' }).first()) as
    { seq: string | number | null } | undefined;
  if (first?.seq === null || first?.seq === undefined) return;
  let after: string | number = String(BigInt(first.seq) - 1n); // seq starts at 1
  let left = filter.limit ?? Infinity;
  while (left > 0) {
    const query = knex('decision_log')
      .where('seq', '>', after)
      .andWhere('timestamp', '>=', filter.since)
      .orderBy('seq')
      .limit(Math.min(filter.batchSize, left));
    if (filter.path !== undefined) void query.andWhere('path', filter.path);
    const rows = (await query) as Row[];
    if (rows.length === 0) return;
    after = rows[rows.length - 1]!.seq;
    left -= rows.length;
    yield rows.map(fromRow);
  }
}

interface Row {
  seq: string | number;
  decision_id: string;
  path: string;
  input: unknown;
  result: unknown;
  error: { code: string; message: string } | null;
  erased: string[];
  revision: string | null;
  bundle_digest: string | null;
  requested_by: string | null;
  timestamp: Date;
  eval_ns: string | number;
  prev_hash: string;
  hash: string;
}

// Everything that identifies a decision goes into its hash (timestamps at ms precision, as stored).
function hashedFields(e: DecisionEvent): Record<string, unknown> {
  return {
    decision_id: e.decision_id,
    path: e.path,
    input: e.inputJson !== undefined ? new CanonicalText(e.inputJson) : (e.input ?? null),
    result: e.result ?? null,
    error: e.error ?? null,
    erased: e.erased,
    revision: e.revision,
    bundle_digest: e.bundle_digest,
    requested_by: e.requested_by,
    timestamp: e.timestamp.toISOString(),
    eval_ns: String(e.eval_ns),
  };
}

function fromRow(r: Row): DecisionEvent {
  return {
    decision_id: r.decision_id,
    path: r.path,
    input: r.input,
    ...(r.result !== null && { result: r.result }),
    ...(r.error !== null && { error: r.error }),
    erased: r.erased,
    revision: r.revision,
    bundle_digest: r.bundle_digest,
    requested_by: r.requested_by,
    timestamp: new Date(r.timestamp),
    eval_ns: Number(r.eval_ns),
  };
}
