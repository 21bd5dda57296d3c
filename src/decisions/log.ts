import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { findChainBreak, type ChainBreak, chainHash, GENESIS_HASH } from '../lib/hash-chain.js';
import type { Logger } from '../logging/index.js';

/** One decision as OPA's decision log shapes it (input already masked). */
export interface DecisionEvent {
  decision_id: string;
  path: string;
  input: unknown;
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
  /** Recomputes the whole chain; returns the first break or undefined. */
  verify(): Promise<{ rows: number; break: ChainBreak | undefined }>;
  /** Decisions waiting in memory (what a crash right now would lose). */
  pending(): number;
  close(): Promise<void>;
}

// One lock key for the chain's tail: replicas append one batch at a time, so the chain stays
// linear across processes.
const CHAIN_LOCK = 0x64_65_63_6c; // "decl"
const BATCH = 2000;
const COLUMNS =
  'decision_id uuid, path text, input jsonb, result jsonb, error jsonb, erased jsonb, revision text, bundle_digest text, ' +
  'requested_by text, timestamp timestamptz, eval_ns bigint, prev_hash text, hash text';
const NAMES = COLUMNS.split(', ').map((c) => c.split(' ')[0]).join(', ');
const INSERT_BATCH = `INSERT INTO decision_log (${NAMES})
  SELECT ${NAMES} FROM ROWS FROM (jsonb_to_recordset(?::jsonb) AS (${COLUMNS})) WITH ORDINALITY AS x(${NAMES}, n) ORDER BY n`;

/** Creates the writer; a timer flushes the buffer every `flushIntervalMs`. */
export function createDecisionLog(knex: Knex, logger: Logger, options: DecisionLogOptions): DecisionLog {
  const log = logger.child({ component: 'decision-log' });
  const buffer: DecisionEvent[] = [];
  const waiters: (() => void)[] = [];
  let flushing: Promise<void> | undefined;
  let failing = false;

  const flushOnce = async (): Promise<void> => {
    while (buffer.length > 0) {
      const batch = buffer.slice(0, BATCH);
      await knex.transaction(async (trx) => {
        await trx.raw('select pg_advisory_xact_lock(?)', [CHAIN_LOCK]);
        const tail = (await trx('decision_log').orderBy('seq', 'desc').first('hash')) as { hash: string } | undefined;
        let prev = tail?.hash ?? GENESIS_HASH;
        const rows = batch.map((e) => {
          const hash = chainHash(prev, hashedFields(e));
          const row = toRow(e, prev, hash);
          prev = hash;
          return row;
        });
        // One parameter for the whole batch; WITH ORDINALITY keeps seq in chain order.
        await trx.raw(INSERT_BATCH, [JSON.stringify(rows)]);
      });
      buffer.splice(0, batch.length);
      while (waiters.length > 0 && buffer.length < options.bufferSize) waiters.shift()!();
    }
  };

  const flush = (): Promise<void> => {
    flushing ??= flushOnce()
      .then(() => {
        if (failing) log.info('decision log writes resumed');
        failing = false;
      })
      .catch((err: unknown) => {
        if (!failing) log.error({ err: String((err as Error)?.message ?? err), pending: buffer.length }, 'decision log write failed; retrying');
        failing = true;
        throw err;
      })
      .finally(() => {
        flushing = undefined;
      });
    return flushing;
  };

  const timer = setInterval(() => {
    if (buffer.length > 0) flush().catch(() => undefined);
  }, options.flushIntervalMs);
  timer.unref();

  return {
    async record(event) {
      if (buffer.length >= options.bufferSize) {
        let release!: () => void;
        const space = new Promise<void>((resolve) => (release = resolve));
        waiters.push(release);
        let timeout: NodeJS.Timeout | undefined;
        const expired = new Promise<'timeout'>((resolve) => (timeout = setTimeout(() => resolve('timeout'), options.enqueueTimeoutMs)));
        const outcome = await Promise.race([space, expired]);
        clearTimeout(timeout);
        if (outcome === 'timeout') {
          waiters.splice(waiters.indexOf(release), 1);
          throw new GatewayError('decision_log_unavailable', 'the decision log cannot keep up; decision not made');
        }
      }
      buffer.push(event);
      if (buffer.length >= BATCH) flush().catch(() => undefined);
    },
    flush,
    async get(decisionId) {
      const row = (await knex('decision_log').where({ decision_id: decisionId }).first()) as Row | undefined;
      return row && fromRow(row);
    },
    async verify() {
      const rows = (await knex('decision_log').orderBy('seq', 'asc').select()) as Row[];
      const chainBreak = findChainBreak(
        rows.map((r) => ({ seq: String(r.seq), prevHash: r.prev_hash, hash: r.hash, record: hashedFields(fromRow(r)) })),
      );
      return { rows: rows.length, break: chainBreak };
    },
    pending: () => buffer.length,
    async close() {
      clearInterval(timer);
      await flushing?.catch(() => undefined);
      if (buffer.length > 0) {
        await flush().catch((err: unknown) => {
          log.error({ lost: buffer.length, err: String((err as Error)?.message ?? err) }, 'decision log could not be flushed at shutdown');
        });
      }
    },
  };
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
    input: e.input ?? null,
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

// The stored row is the hashed record plus its chain links (serialised as JSON for the batch insert).
function toRow(e: DecisionEvent, prevHash: string, hash: string): Record<string, unknown> {
  return { ...hashedFields(e), eval_ns: e.eval_ns, prev_hash: prevHash, hash };
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
