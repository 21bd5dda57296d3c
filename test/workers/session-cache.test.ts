import { randomUUID } from 'node:crypto';
import test from 'ava';
import type { Knex } from 'knex';
import pino from 'pino';
import { migrateLatest, openDatabase } from '../../src/storage/index.js';
import type { Row } from '../../src/workers/rows.js';
import { createSessionCache, WORKER_CACHE_MS } from '../../src/workers/session-cache.js';
import { testConfig } from '../helpers/config.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

// The session rows behind worker tokens, on real PostgreSQL: a row stands for its node for
// WORKER_CACHE_MS counted from before it was read; reads in flight are shared and batched;
// and a read in flight when the node is forgotten (an ended session heard of by NOTIFY) or
// written here is never remembered, so it cannot bring an older row back.

let pgDb: TestDatabase;
let knex: Knex;
let close: () => Promise<void>;
/** Statements on `workers` so far. */
let reads = 0;

test.before(async () => {
  pgDb = await createTestDatabase();
  const db = await openDatabase(testConfig({ DATABASE_URL: pgDb.url }).database, pino({ level: 'silent' }));
  await migrateLatest(db.knex);
  knex = db.knex;
  close = () => db.close();
  knex.on('query', (q: { sql: string }) => {
    if (/from "workers"/.test(q.sql)) reads++;
  });
  await knex('psks').insert({ id: 'cachepsk0001', name: 'cache', secret_sha256: Buffer.alloc(32), created_by: 'test' });
});
test.after.always(async () => {
  await close?.();
  await pgDb?.drop();
});

/** Stores a live session of `nodeId`; answers the stored row. */
async function session(nodeId: string): Promise<Row> {
  const at = new Date();
  const report = { node_id: nodeId, labels: ['cloud'] };
  const row = {
    node_id: nodeId,
    capabilities: JSON.stringify(report),
    capabilities_sha256: 'x',
    session_id: randomUUID(),
    psk_id: 'cachepsk0001',
    source: '127.0.0.1',
    registered_at: at,
    last_seen_at: at,
    held_until: new Date(at.getTime() + 60_000),
    session_ended_at: null,
  };
  const [stored] = (await knex('workers').insert(row).onConflict('node_id').merge().returning('*')) as Row[];
  return stored!;
}

const endSession = (nodeId: string) => knex('workers').where({ node_id: nodeId }).update({ session_ended_at: new Date() });

test.serial('a read row stands for its node for WORKER_CACHE_MS from before the read, then is read again', async (t) => {
  let clock = 1_000_000;
  const cache = createSessionCache(knex, () => clock);
  const stored = await session('sc-fresh');
  t.is(cache.fresh('sc-fresh'), undefined);
  const entry = await cache.read('sc-fresh');
  t.is(entry?.row.session_id, stored.session_id);
  t.is(entry?.worker.nodeId, 'sc-fresh');
  t.is(cache.fresh('sc-fresh'), entry, 'the same entry, worker built once');
  clock += WORKER_CACHE_MS - 1;
  t.truthy(cache.fresh('sc-fresh'));
  clock += 1;
  t.is(cache.fresh('sc-fresh'), undefined, 'no longer than WORKER_CACHE_MS');
  t.is(await cache.read('no-such-node'), undefined);
  t.is(cache.fresh('no-such-node'), undefined);
});

test.serial('a read in flight when the node is forgotten answers its callers but is not remembered', async (t) => {
  const cache = createSessionCache(knex);
  await session('sc-forget');
  const inFlight = cache.read('sc-forget');
  // The session ends (on another replica) and this replica hears of it while the read is out.
  await endSession('sc-forget');
  cache.forget('sc-forget');
  await inFlight;
  t.is(cache.fresh('sc-forget'), undefined, 'the older read is not remembered');
  const after = await cache.read('sc-forget');
  t.truthy(after?.row.session_ended_at, 'the next read sees the ended session');
  t.is(cache.fresh('sc-forget'), after);
});

test.serial('a row written here is not overwritten by a read that was in flight', async (t) => {
  const cache = createSessionCache(knex);
  const old = await session('sc-store');
  const inFlight = cache.read('sc-store');
  const newer = await session('sc-store');
  t.not(newer.session_id, old.session_id);
  cache.store(newer);
  await inFlight;
  t.is(cache.fresh('sc-store')?.row.session_id, newer.session_id);
});

test.serial('reads are shared per node and batched across nodes while one is in flight', async (t) => {
  const cache = createSessionCache(knex);
  const ids = ['sc-batch-0', 'sc-batch-1', 'sc-batch-2', 'sc-batch-3'];
  for (const id of ids) await session(id);
  const before = reads;
  const first = cache.read(ids[0]!);
  // While the first is in flight: the same node again (shared), and three others (one statement).
  const again = cache.read(ids[0]!);
  const rest = ids.slice(1).map((id) => cache.read(id));
  t.is(again, first, 'one read per node in flight');
  const entries = await Promise.all([first, ...rest]);
  t.deepEqual(
    entries.map((e) => e?.row.node_id),
    ids,
  );
  t.is(reads - before, 2, 'the first read, then one for the three others');
  for (const id of ids) t.truthy(cache.fresh(id));
});

test.serial('a failed read is not remembered and does not stick', async (t) => {
  const cache = createSessionCache(knex);
  await session('sc-fail');
  await knex.raw('ALTER TABLE workers RENAME TO workers_away');
  try {
    await t.throwsAsync(cache.read('sc-fail'));
  } finally {
    await knex.raw('ALTER TABLE workers_away RENAME TO workers');
  }
  t.is(cache.fresh('sc-fail'), undefined);
  t.is((await cache.read('sc-fail'))?.row.node_id, 'sc-fail', 'the next read goes to the database again');
});
