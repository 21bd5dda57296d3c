import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { CanonicalText, canonicalJson } from './canonical-json.js';
import { findChainBreak, type ChainBreak, GENESIS_HASH } from './hash-chain.js';
import type { Logger } from '../logging/index.js';
import { createLogThrottle } from './log-throttle.js';

/** How records of one append-only, hash-chained table are written. */
export interface ChainedLogSpec<E> {
  table: string;
  /** Advisory lock key for the chain's tail: replicas append one batch at a time, so the chain stays linear across processes. */
  lockKey: number;
  /**
   * `name type` pairs of the stored columns (besides prev_hash and hash), in order. The names are
   * what is inserted; each value is read into the table's own type for its column.
   */
  columns: string;
  /** What the hash covers; also what `verify` recomputes from a stored row. */
  hashed(e: E): Record<string, unknown>;
  /**
   * The stored row's fields, when they are not the hashed ones as they are (a number the hash
   * covers as text converts to its column without one): without it, the hashed record is stored.
   */
  row?(e: E): Record<string, unknown>;
  /** Rebuilds the hashed fields from a stored row. */
  fromRow(row: Record<string, unknown>): Record<string, unknown>;
  /** Error code when the buffer stays full past the enqueue timeout. */
  unavailable: 'decision_log_unavailable' | 'audit_unavailable';
}

/** Buffering and timing of a chained log writer. */
export interface ChainedLogOptions {
  bufferSize: number;
  flushIntervalMs: number;
  enqueueTimeoutMs: number;
}

/** A buffered writer of one hash-chained table. */
export interface ChainedLog<E> {
  /**
   * Queues a record. Waits while the buffer is full and, past the enqueue timeout, throws the
   * spec's `unavailable` code: a record that cannot be kept is never dropped silently, the
   * request fails instead.
   */
  record(event: E): Promise<void>;
  /** Writes everything queued. */
  flush(): Promise<void>;
  /**
   * Recomputes the whole chain; returns the first break or undefined. With `from` (a prune
   * cut: the rows up to `from.seq` are gone), the rows after it verify from its hash instead
   * of the genesis.
   */
  verify(from?: ChainStart): Promise<{ rows: number; break: ChainBreak | undefined }>;
  /** Records waiting in memory (what a crash right now would lose). */
  pending(): number;
  close(): Promise<void>;
}

/** Where a pruned chain starts: the last removed row's sequence number and hash. */
export interface ChainStart {
  seq: string;
  hash: string;
}

const BATCH = 2000;

/** Creates the writer; a timer flushes the buffer every `flushIntervalMs`. */
export function createChainedLog<E>(knex: Knex, logger: Logger, spec: ChainedLogSpec<E>, options: ChainedLogOptions): ChainedLog<E> {
  const log = logger.child({ component: spec.table });
  const names = columnNames(spec.columns);
  const buffer: E[] = [];
  const waiters: (() => void)[] = [];
  let flushing: Promise<void> | undefined;
  // Flushes fail every interval while the database is away: one line per throttle interval, with a count.
  const failures = createLogThrottle(log, { level: 'error' });

  const flushOnce = async (): Promise<void> => {
    while (buffer.length > 0) {
      const batch = buffer.slice(0, BATCH);
      await appendBatch(knex, spec, names, batch);
      buffer.splice(0, batch.length);
      while (waiters.length > 0 && buffer.length < options.bufferSize) waiters.shift()!();
    }
  };

  const flush = (): Promise<void> => {
    flushing ??= flushOnce()
      .then(() => {
        failures.recovered(`${spec.table} writes resumed`);
      })
      .catch((err: unknown) => {
        failures.failure({ err: String((err as Error)?.message ?? err), pending: buffer.length }, `${spec.table} write failed; retrying`);
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
      if (buffer.length >= options.bufferSize) await waitForSpace(waiters, options.enqueueTimeoutMs, spec);
      buffer.push(event);
      if (buffer.length >= BATCH) flush().catch(() => undefined);
    },
    flush,
    verify: (from) => verifyChain(knex, spec, from),
    pending: () => buffer.length,
    async close() {
      clearInterval(timer);
      await flushing?.catch(() => undefined);
      if (buffer.length > 0) {
        await flush().catch((err: unknown) => {
          log.error({ lost: buffer.length, err: String((err as Error)?.message ?? err) }, `${spec.table} could not be flushed at shutdown`);
        });
      }
    },
  };
}

// One autocommit call per batch: the function takes the chain's lock, reads the tail and
// hashes each record's canonical JSON as chainHash does (see its migration).
const APPEND = 'select cynode_chain_append(?, ?, ?::text[], ?::json, ?::json) as head';

/** The column names of a `name type, ...` list, as a PostgreSQL array literal; refuses anything but plain identifiers. */
function columnNames(columns: string): string {
  const names = columns.split(',').map((c) => c.trim().split(/\s+/)[0]!);
  for (const name of names) if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`chained log: bad column name '${name}'`);
  return `{${names.join(',')}}`;
}

/**
 * Appends one batch in one round trip (`cynode_chain_append`): under the chain's advisory lock,
 * each row hashing the one before it. The function comes with the migrations
 * (migrations/20261202020000_create_chain_append.ts).
 */
async function appendBatch<E>(knex: Knex, spec: ChainedLogSpec<E>, names: string, batch: readonly E[]): Promise<void> {
  let hashed = '[';
  for (let i = 0; i < batch.length; i++) hashed += `${i > 0 ? ',' : ''}${canonicalJson(spec.hashed(batch[i]!))}`;
  const row = spec.row;
  const rows = row ? rowsJson(batch.map((e) => row(e))) : null;
  const bindings = [spec.table, spec.lockKey, names, `${hashed}]`, rows];
  await knex.raw(APPEND, bindings);
}

/**
 * `JSON.stringify(rows)`, except that a field holding CanonicalText (JSON made once, when the
 * record was queued) is written as it is rather than serialised again.
 */
function rowsJson(rows: readonly Record<string, unknown>[]): string {
  let out = '[';
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    let fields = '';
    for (const key of Object.keys(row)) {
      const value = row[key];
      const text = value instanceof CanonicalText ? value.text : (JSON.stringify(value) as string | undefined);
      if (text === undefined) continue; // as JSON.stringify leaves out undefined and functions
      fields += `${fields ? ',' : ''}${JSON.stringify(key)}:${text}`;
    }
    out += `${i > 0 ? ',' : ''}{${fields}}`;
  }
  return out + ']';
}

/** Waits for room in a full buffer for at most `timeoutMs`, then refuses with the log's unavailable code. */
async function waitForSpace<E>(waiters: (() => void)[], timeoutMs: number, spec: ChainedLogSpec<E>): Promise<void> {
  let release!: () => void;
  const space = new Promise<void>((resolve) => (release = resolve));
  waiters.push(release);
  let timeout: NodeJS.Timeout | undefined;
  const expired = new Promise<'timeout'>((resolve) => (timeout = setTimeout(() => resolve('timeout'), timeoutMs)));
  const outcome = await Promise.race([space, expired]);
  clearTimeout(timeout);
  if (outcome === 'timeout') {
    waiters.splice(waiters.indexOf(release), 1);
    throw new GatewayError(spec.unavailable, `the ${spec.table} cannot keep up; request not served`);
  }
}

/** Recomputes the chain from `from` (a prune cut) or from the genesis; returns the first break. */
async function verifyChain<E>(knex: Knex, spec: ChainedLogSpec<E>, from: ChainStart | undefined) {
  const query = knex(spec.table).orderBy('seq', 'asc');
  if (from) query.where('seq', '>', from.seq);
  const rows = (await query.select()) as (Record<string, unknown> & { seq: string | number; prev_hash: string; hash: string })[];
  const chainBreak = findChainBreak(
    rows.map((r) => ({ seq: String(r.seq), prevHash: r.prev_hash, hash: r.hash, record: spec.fromRow(r) })),
    from?.hash ?? GENESIS_HASH,
  );
  return { rows: rows.length, break: chainBreak };
}
