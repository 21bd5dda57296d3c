import test from 'ava';
import knexFactory, { type Knex } from 'knex';
import pino from 'pino';
import { GatewayError } from '../../src/errors/index.js';
import { createChainedLog, type ChainedLog, type ChainedLogOptions } from '../../src/lib/chained-log.js';
import { chainHash, findChainBreak, GENESIS_HASH } from '../../src/lib/hash-chain.js';
import { CHAIN_APPEND_FUNCTION } from '../../migrations/20261202020000_create_chain_append.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

// The chained-log writer on real PostgreSQL, over a table made for the test: what it writes
// links row to row, what verify() recomputes catches an edit, and nothing queued is lost.
// (No column may be called `n`: the insert names its ordinality column that.)

interface Event {
  name: string;
  weight: number;
}

let db: TestDatabase;
let knex: Knex;
const logger = pino({ level: 'silent' });
const logs: ChainedLog<Event>[] = [];
let tables = 0;

test.before(async () => {
  db = await createTestDatabase();
  knex = knexFactory({ client: 'pg', connection: db.url, pool: { min: 0, max: 4 } });
  // The tables are made by hand, not by the migrations: the append function is created as its migration does.
  await knex.raw(CHAIN_APPEND_FUNCTION);
});
test.after.always(async () => {
  await Promise.all(logs.map((l) => l.close()));
  await knex?.destroy();
  await db?.drop();
});

/** A fresh chained table and a writer over it (the timer is far off unless a test asks). */
async function chainedLog(options: Partial<ChainedLogOptions> = {}): Promise<{ log: ChainedLog<Event>; table: string }> {
  const table = `chain_${++tables}`;
  await knex.raw(
    `CREATE TABLE ${table} (seq bigserial PRIMARY KEY, name text NOT NULL, weight integer NOT NULL, prev_hash text NOT NULL, hash text NOT NULL)`,
  );
  const log = createChainedLog<Event>(
    knex,
    logger,
    {
      table,
      lockKey: 900_000 + tables,
      columns: 'name text, weight integer',
      hashed: (e) => ({ name: e.name, weight: e.weight }),
      row: (e) => ({ name: e.name, weight: e.weight }),
      fromRow: (r) => ({ name: r.name, weight: r.weight }),
      unavailable: 'audit_unavailable',
    },
    { bufferSize: 1000, flushIntervalMs: 60_000, enqueueTimeoutMs: 50, ...options },
  );
  logs.push(log);
  return { log, table };
}

type Row = { seq: string; name: string; weight: number; prev_hash: string; hash: string };
const rowsOf = (table: string) => knex(table).orderBy('seq').select<Row[]>();

test.serial('each row links to the one before it, from the genesis hash, in the order recorded', async (t) => {
  const { log, table } = await chainedLog();
  for (let i = 0; i < 5; i++) await log.record({ name: `e${i}`, weight: i });
  await log.flush();
  const rows = await rowsOf(table);
  t.deepEqual(
    rows.map((r) => r.name),
    ['e0', 'e1', 'e2', 'e3', 'e4'],
  );
  let prev = GENESIS_HASH;
  for (const r of rows) {
    t.is(r.prev_hash, prev);
    t.is(r.hash, chainHash(prev, { name: r.name, weight: r.weight }));
    prev = r.hash;
  }
  t.deepEqual(await log.verify(), { rows: 5, break: undefined });
});

test.serial('a later flush continues the chain from the stored tail', async (t) => {
  const { log, table } = await chainedLog();
  await log.record({ name: 'first', weight: 1 });
  await log.flush();
  await log.record({ name: 'second', weight: 2 });
  await log.record({ name: 'third', weight: 3 });
  t.is(log.pending(), 2, 'records wait in memory until a flush');
  await log.flush();
  t.is(log.pending(), 0);
  const rows = await rowsOf(table);
  t.is(rows[1]!.prev_hash, rows[0]!.hash);
  t.is(rows[2]!.prev_hash, rows[1]!.hash);
  t.deepEqual(await log.verify(), { rows: 3, break: undefined });
});

test.serial('two writers on one table append whole batches and keep the chain linear', async (t) => {
  const { log, table } = await chainedLog();
  // A second writer over the same table and lock, as a second replica would have.
  const other = createChainedLog<Event>(
    knex,
    logger,
    {
      table,
      lockKey: 900_000 + tables,
      columns: 'name text, weight integer',
      hashed: (e) => ({ ...e }),
      row: (e) => ({ ...e }),
      fromRow: (r) => ({ name: r.name, weight: r.weight }),
      unavailable: 'audit_unavailable',
    },
    { bufferSize: 1000, flushIntervalMs: 60_000, enqueueTimeoutMs: 50 },
  );
  logs.push(other);
  for (let i = 0; i < 50; i++) {
    await log.record({ name: 'a', weight: i });
    await other.record({ name: 'b', weight: i });
  }
  await Promise.all([log.flush(), other.flush()]);
  const rows = await rowsOf(table);
  t.is(rows.length, 100);
  t.deepEqual(await log.verify(), { rows: 100, break: undefined });
  const names = rows.map((r) => r.name).join('');
  t.true(names === 'a'.repeat(50) + 'b'.repeat(50) || names === 'b'.repeat(50) + 'a'.repeat(50), 'each batch lands whole');
});

test.serial('the flush timer writes what is queued without anyone asking', async (t) => {
  const { log, table } = await chainedLog({ flushIntervalMs: 20 });
  await log.record({ name: 'timed', weight: 1 });
  for (let i = 0; i < 100 && (await rowsOf(table)).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.is((await rowsOf(table)).length, 1);
  t.is(log.pending(), 0);
});

test.serial('close() flushes everything still queued', async (t) => {
  const { log, table } = await chainedLog();
  for (let i = 0; i < 3; i++) await log.record({ name: `c${i}`, weight: i });
  t.is((await rowsOf(table)).length, 0);
  await log.close();
  t.is((await rowsOf(table)).length, 3);
  t.deepEqual(await log.verify(), { rows: 3, break: undefined });
});

test.serial('a full buffer makes record() wait, and past the enqueue timeout refuse with the spec code', async (t) => {
  const { log } = await chainedLog({ bufferSize: 2, enqueueTimeoutMs: 30 });
  await log.record({ name: 'x', weight: 1 });
  await log.record({ name: 'y', weight: 2 });
  const refused = await t.throwsAsync(log.record({ name: 'z', weight: 3 }), { instanceOf: GatewayError });
  t.is(refused.code, 'audit_unavailable');
  t.is(log.pending(), 2, 'the refused record was not kept');
  const waiting = log.record({ name: 'z', weight: 3 });
  await log.flush();
  await waiting;
  t.is(log.pending(), 1, 'a flush made room and the waiting record went in');
});

test.serial('verify() finds an edited row by its sequence number, and a removed one as a broken link', async (t) => {
  const { log, table } = await chainedLog();
  for (let i = 0; i < 4; i++) await log.record({ name: `v${i}`, weight: i });
  await log.flush();
  const rows = await rowsOf(table);
  await knex(table).where({ seq: rows[1]!.seq }).update({ weight: 99 });
  t.deepEqual(await log.verify(), { rows: 4, break: { seq: String(rows[1]!.seq), reason: 'hash_mismatch' } });
  await knex(table).where({ seq: rows[1]!.seq }).update({ weight: 1 });
  t.deepEqual(await log.verify(), { rows: 4, break: undefined }, 'restored, the chain is whole again');
  await knex(table).where({ seq: rows[2]!.seq }).delete();
  t.deepEqual(await log.verify(), { rows: 3, break: { seq: String(rows[3]!.seq), reason: 'link_broken' } });
});

test('findChainBreak: an empty chain is intact; a chain may start from a given hash', (t) => {
  t.is(findChainBreak([]), undefined);
  const start = 'f'.repeat(64);
  const hash = chainHash(start, { a: 1 });
  t.is(findChainBreak([{ seq: '7', prevHash: start, hash, record: { a: 1 } }], start), undefined);
  t.deepEqual(findChainBreak([{ seq: '7', prevHash: start, hash, record: { a: 1 } }]), { seq: '7', reason: 'link_broken' });
});

test('chainHash covers the previous hash and the record, independent of key order', (t) => {
  t.is(chainHash(GENESIS_HASH, { a: 1, b: 2 }), chainHash(GENESIS_HASH, { b: 2, a: 1 }));
  t.not(chainHash(GENESIS_HASH, { a: 1 }), chainHash('1'.repeat(64), { a: 1 }));
  t.not(chainHash(GENESIS_HASH, { a: 1 }), chainHash(GENESIS_HASH, { a: 2 }));
  t.regex(chainHash(GENESIS_HASH, {}), /^[0-9a-f]{64}$/);
});
