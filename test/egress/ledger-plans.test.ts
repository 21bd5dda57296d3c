import { randomUUID } from 'node:crypto';
import test from 'ava';
import type { Knex } from 'knex';
import pino from 'pino';
import { createLedger } from '../../src/egress/ledger.js';
import { connectAndMigrate } from '../../src/storage/index.js';
import { createTestDatabase } from '../helpers/postgres.js';

/** A pg client as knex pools it: its notices are where auto_explain reports the plans it ran. */
interface PgConnection {
  on(event: 'notice', listener: (msg: { message?: string }) => void): void;
  off(event: 'notice', listener: (msg: { message?: string }) => void): void;
}

const later = () => new Date(Date.now() + 60_000);

// plpgsql keeps each statement's plan for the life of the connection. The connection here plans
// the ledger functions while their tables are empty, then keeps running them after the tables have
// grown to thousands of rows (no ANALYZE in between, as on a busy new deployment): every lookup of
// a call's reservation and rate takes must still go through an index.
test('settlement and the batch lock step look rows up by key, however small the tables were when the connection planned them', async (t) => {
  const tdb = await createTestDatabase();
  const db = await connectAndMigrate(
    { url: tdb.url, dataDir: '', poolMax: 1, connectTimeoutMs: 5000, startupTimeoutMs: 0 },
    pino({ level: 'silent' }),
  );
  t.teardown(async () => {
    await db.close();
    await tdb.drop();
  });
  const knex: Knex = db.knex;
  await knex.raw('ALTER TABLE rate_events SET (autovacuum_enabled = false)');
  await knex.raw('ALTER TABLE budget_reservations SET (autovacuum_enabled = false)');
  const ledger = createLedger({ knex });
  await ledger.setBudget('task', 'plans', 1000, 'test');
  const takes = [
    { key: 'rpm:plans', limit: 1_000_000, amount: 1, tokens: false },
    { key: 'tpm:plans', limit: 1_000_000, amount: 100, tokens: true },
  ];
  const holds = [{ scope: 'task' as const, subject_id: 'plans', required: true }];
  const call = async () => {
    const id = randomUUID();
    t.is(await ledger.admit(id, holds, 0.01, takes, later()), undefined);
    t.true(await ledger.settle(id, 0.005, 'settled', 40), 'settled, refunding part of the token estimate');
  };
  for (let i = 0; i < 12; i++) await call(); // past plpgsql's first five custom plans: the generic plans are cached now

  await knex.raw(`INSERT INTO rate_events (key, call_id, at, amount)
    SELECT 'tpm:plans', gen_random_uuid(), now() - interval '1 hour', 1 FROM generate_series(1, 20000)`);
  await knex.raw(`INSERT INTO budget_reservations (call_id, state, holds, counters, amount_micros, expires_at, created_at)
    SELECT gen_random_uuid(), 'settled', '[]', '[]', 1, now(), now() FROM generate_series(1, 20000)`);

  const connection = (await knex.client.acquireConnection()) as PgConnection;
  const plans: string[] = [];
  const onNotice = (msg: { message?: string }) => plans.push(msg.message ?? '');
  connection.on('notice', onNotice);
  await knex.client.releaseConnection(connection);
  await knex.raw(`LOAD 'auto_explain'`);
  for (const set of ['log_min_duration = 0', 'log_nested_statements = on', 'log_level = notice']) await knex.raw(`SET auto_explain.${set}`);
  for (let i = 0; i < 3; i++) await call();
  connection.off('notice', onNotice);

  const refundLookups = plans.filter((p) => /FROM rate_events ev WHERE ev\.key = k\.key/.test(p));
  const lockSteps = plans.filter((p) => /FROM budget_reservations r WHERE r\.call_id = k\.call/.test(p));
  t.is(refundLookups.length, 3, 'each settlement looked its token take up once, and auto_explain saw it');
  t.is(lockSteps.length, 3, "each batch locked its settlement's reservation once");
  for (const p of [...refundLookups, ...lockSteps]) t.regex(p, /Index (Only )?Scan using (rate_events_pkey|budget_reservations_pkey)/);
  const scans = plans.filter((p) => /Seq Scan on (rate_events|budget_reservations)/.test(p) && !/DELETE FROM/.test(p));
  t.deepEqual(scans, [], 'no ledger statement scanned a whole table');
});
