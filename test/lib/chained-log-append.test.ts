import { randomUUID } from 'node:crypto';
import test from 'ava';
import knexFactory, { type Knex } from 'knex';
import pino from 'pino';
import { createDecisionLog, type DecisionEvent, type DecisionLog } from '../../src/decisions/index.js';
import { auditEvent, createAuditLog } from '../../src/egress/audit.js';
import { canonicalJson } from '../../src/lib/canonical-json.js';
import { chainHash, GENESIS_HASH } from '../../src/lib/hash-chain.js';
import { migrateLatest, openDatabase, type Database } from '../../src/storage/index.js';
import { embeddedDataDir, testConfig } from '../helpers/config.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

// The chained logs' one-round-trip append (`cynode_chain_append`, hashing in the database) on
// migrated databases: PostgreSQL with replicas appending to one chain at once, and the
// embedded PGlite. The database must hash exactly the bytes `chainHash` hashes, so every
// chain is checked by the Node verifier (`verify`) and row by row against `chainHash`.

const silent = pino({ level: 'silent' });
const options = { bufferSize: 10_000, flushIntervalMs: 60_000, enqueueTimeoutMs: 5000 };
let pgDb: TestDatabase;
let pg: Database;

test.before(async () => {
  pgDb = await createTestDatabase();
  pg = await openDatabase(testConfig({ DATABASE_URL: pgDb.url }).database, silent);
  await migrateLatest(pg.knex);
});
test.after.always(async () => {
  await pg?.close();
  await pgDb?.drop();
});

// Text a careless hasher would get wrong: non-ASCII, astral, escapes, JSON's own metacharacters.
const AWKWARD = 'é ü 中文 😀 \u2028\u2029 "quoted" back\\slash\nnew line\ttab </script> $$ \u0001';

function decision(writer: number, n: number, input: unknown = { writer, n, note: AWKWARD }): DecisionEvent {
  return {
    decision_id: randomUUID(),
    path: 'cynode/register/decision',
    input,
    // As the decision service records it: the input's canonical JSON made once, when decided.
    inputJson: canonicalJson(input),
    result: { allow: n % 2 === 0, reasons: n % 2 === 0 ? [] : ['region_not_allowed'] },
    erased: [],
    revision: `r${writer}`,
    bundle_digest: 'd'.repeat(64),
    requested_by: `writer-${writer}`,
    timestamp: new Date(1_800_000_000_000 + n),
    eval_ns: 1000 + n,
  };
}

type Link = { seq: string; prev_hash: string; hash: string };

/** Walks a table in `seq` order and returns how many rows link to the row before them, from the genesis. */
async function linkedRows(knex: Knex, table: string): Promise<{ rows: number; linked: number }> {
  const rows = (await knex(table).orderBy('seq').select('seq', 'prev_hash', 'hash')) as Link[];
  let prev = GENESIS_HASH;
  let linked = 0;
  for (const r of rows) {
    if (r.prev_hash === prev) linked++;
    prev = r.hash;
  }
  return { rows: rows.length, linked };
}

/** Counts the statements `fn` sends through `knex`. */
async function statements(knex: Knex, fn: () => Promise<unknown>): Promise<number> {
  let count = 0;
  const listener = () => count++;
  knex.on('query', listener);
  try {
    await fn();
  } finally {
    knex.off('query', listener);
  }
  return count;
}

test.serial('PostgreSQL: nine writers on three pools append to one linear chain that verifies', async (t) => {
  await pg.knex.raw('TRUNCATE decision_log');
  // Three pools as three replicas would hold them, three writers on each; flushes on every
  // writer race one another through the chain's lock.
  const pools = [0, 1, 2].map(() => knexFactory({ client: 'pg', connection: pgDb.url, pool: { min: 0, max: 3 } }));
  const writers: DecisionLog[] = pools.flatMap((knex) => [0, 1, 2].map(() => createDecisionLog(knex, silent, options)));
  const ids = new Set<string>();
  try {
    await Promise.all(
      writers.map(async (log, w) => {
        for (let round = 0; round < 8; round++) {
          for (let i = 0; i < 25; i++) {
            const e = decision(w, round * 25 + i);
            ids.add(e.decision_id);
            await log.record(e);
          }
          await log.flush();
        }
      }),
    );
    t.deepEqual(await writers[4]!.verify(), { rows: 9 * 8 * 25, break: undefined });
    t.deepEqual(await linkedRows(pg.knex, 'decision_log'), { rows: 1800, linked: 1800 }, 'each row, in seq order, links to the one before');
    const stored = (await pg.knex('decision_log').pluck('decision_id')) as string[];
    t.is(new Set(stored).size, 1800);
    t.true(
      stored.every((id) => ids.has(id)),
      'every decision written once',
    );
  } finally {
    await Promise.all(writers.map((w) => w.close()));
    await Promise.all(pools.map((k) => k.destroy()));
  }
});

test.serial('PostgreSQL: a flush is one statement, and each stored hash is chainHash over the hashed record', async (t) => {
  await pg.knex.raw('TRUNCATE decision_log');
  const log = createDecisionLog(pg.knex, silent, options);
  const events = [decision(0, 1), decision(0, 2, [AWKWARD, { z: 1, a: null }, 1.5e-7]), decision(0, 3, 'just text')];
  for (const e of events) await log.record(e);
  t.is(await statements(pg.knex, () => log.flush()), 1, 'three decisions, one round trip');
  await log.record(decision(0, 4));
  t.is(await statements(pg.knex, () => log.flush()), 1, 'and the next flush continues the chain in one as well');
  const rows = (await pg.knex('decision_log').orderBy('seq').select('decision_id', 'prev_hash', 'hash')) as {
    decision_id: string;
    prev_hash: string;
    hash: string;
  }[];
  t.is(rows.length, 4);
  for (const [i, e] of events.entries()) {
    const expected = chainHash(rows[i]!.prev_hash, hashedDecision(e));
    t.is(rows[i]!.hash, expected, `decision ${i} hashes as chainHash does`);
  }
  t.deepEqual(await log.verify(), { rows: 4, break: undefined });
  const back = await log.get(events[1]!.decision_id);
  t.deepEqual(back?.input, events[1]!.input, 'the stored input is the recorded one');
  t.is(back?.eval_ns, events[1]!.eval_ns, 'eval_ns, hashed as text, is stored as its number');
  await log.close();
});

// What the decision log hashes (its `hashedFields`), written out independently.
function hashedDecision(e: DecisionEvent): Record<string, unknown> {
  return {
    decision_id: e.decision_id,
    path: e.path,
    input: e.input,
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

test.serial('embedded PGlite: decisions and api.call audits append in one statement each and verify', async (t) => {
  const db = await openDatabase(testConfig({ CYNODE_DATA_DIR: await embeddedDataDir() }).database, silent);
  try {
    t.is(db.kind, 'embedded');
    await migrateLatest(db.knex);
    const log = createDecisionLog(db.knex, silent, options);
    const audit = createAuditLog(db.knex, silent, options);
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 40; i++) await log.record(decision(round, round * 40 + i));
      await audit.record(
        auditEvent(randomUUID(), 'egress', {
          subject_kind: 'admin',
          subject_id: 'orchestrator',
          task_id: `task ${AWKWARD}`,
          outcome: 'ok',
          reasons: [AWKWARD],
          tokens: { input_tokens: 12, cached_input_tokens: 0, cache_write_tokens: 0, output_tokens: 34 },
          reserved_usd: 0.1234567,
          cost_usd: 0.05,
          latency_ms: 1.23456,
        }),
      );
      t.is(await statements(db.knex, () => log.flush()), 1, `round ${round}: one statement for 40 decisions`);
      t.is(await statements(db.knex, () => audit.flush()), 1, `round ${round}: one statement for the audit`);
    }
    t.deepEqual(await log.verify(), { rows: 120, break: undefined });
    t.deepEqual(await audit.verify(), { rows: 3, break: undefined });
    t.deepEqual(await linkedRows(db.knex, 'decision_log'), { rows: 120, linked: 120 });
    const [listed] = await audit.list({ limit: 1 });
    t.is(listed?.reserved_usd, 0.123457, 'numeric at 6 decimals, as before');
    t.is(listed?.latency_ms, 1.235, 'doubles rounded to 3 decimals, as before');
    t.deepEqual(listed?.tokens, { input_tokens: 12, cached_input_tokens: 0, cache_write_tokens: 0, output_tokens: 34 });
    t.is(listed?.task_id, `task ${AWKWARD}`);
    await log.close();
    await audit.close();
  } finally {
    await db.close();
  }
});

test.serial('PostgreSQL: an edited row still breaks the chain the database hashed', async (t) => {
  await pg.knex.raw('TRUNCATE decision_log');
  const log = createDecisionLog(pg.knex, silent, options);
  for (let i = 0; i < 5; i++) await log.record(decision(0, i));
  await log.flush();
  const [, second] = (await pg.knex('decision_log').orderBy('seq').select('seq')) as { seq: string }[];
  // Behind the append-only trigger's back, as an intruder with the table owner's rights would.
  await pg.knex.transaction(async (trx) => {
    await trx.raw('ALTER TABLE decision_log DISABLE TRIGGER decision_log_append_only');
    await trx('decision_log').where({ seq: second!.seq }).update({ requested_by: 'someone else' });
    await trx.raw('ALTER TABLE decision_log ENABLE TRIGGER decision_log_append_only');
  });
  t.deepEqual(await log.verify(), { rows: 5, break: { seq: String(second!.seq), reason: 'hash_mismatch' } });
  await log.close();
});
