import { randomUUID } from 'node:crypto';
import test from 'ava';
import pino from 'pino';
import { createLedger, type Ledger } from '../../src/egress/ledger.js';
import { connectAndMigrate, type Database } from '../../src/storage/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

let tdb: TestDatabase;
let db: Database;
let ledger: Ledger;

test.before(async () => {
  tdb = await createTestDatabase();
  db = await connectAndMigrate(
    { url: tdb.url, dataDir: '', poolMax: 20, connectTimeoutMs: 5000, startupTimeoutMs: 0 },
    pino({ level: 'silent' }),
  );
  ledger = createLedger({ knex: db.knex });
});
test.after.always(async () => {
  await db?.close();
  await tdb?.drop();
});

const later = () => new Date(Date.now() + 60_000);
const task = (id: string) => ({ scope: 'task' as const, subject_id: id, required: true });

test('reservations are all or nothing across budgets, and settling charges the real cost', async (t) => {
  await ledger.setBudget('task', 't1', 1, 'test');
  await ledger.setBudget('user', 'u1', 0.5, 'test');
  const a = randomUUID();
  t.is(await ledger.admit(a, [task('t1'), { scope: 'user', subject_id: 'u1', required: false }], 0.4, [], later()), undefined);
  t.like(await ledger.getBudget('task', 't1'), { reserved_usd: 0.4, spent_usd: 0, remaining_usd: 0.6 });
  // The user budget has 0.1 left: the task budget must not keep a partial hold.
  const b = randomUUID();
  t.like(await ledger.admit(b, [task('t1'), { scope: 'user', subject_id: 'u1', required: false }], 0.2, [], later()), {
    reason: 'budget_exceeded',
    scope: 'user',
  });
  t.like(await ledger.getBudget('task', 't1'), { reserved_usd: 0.4 });
  t.true(await ledger.settle(a, 0.05, 'settled', 0));
  t.false(await ledger.settle(a, 0.05, 'settled', 0), 'a second settlement changes nothing');
  t.like(await ledger.getBudget('task', 't1'), { reserved_usd: 0, spent_usd: 0.05 });
  t.like(await ledger.getBudget('user', 'u1'), { reserved_usd: 0, spent_usd: 0.05, remaining_usd: 0.45 });
  t.like(await ledger.admit(randomUUID(), [task('nobody')], 0.01, [], later()), { reason: 'budget_missing' });
  t.like(await ledger.admit(a, [task('t1')], 0.01, [], later()), { reason: 'replayed' });
});

test('concurrent reservations never exceed the budget', async (t) => {
  await ledger.setBudget('task', 'race', 1, 'test');
  const ids = Array.from({ length: 300 }, () => randomUUID());
  const outcomes = await Promise.all(ids.map((id) => ledger.admit(id, [task('race')], 0.01, [], later())));
  const admitted = outcomes.filter((o) => o === undefined).length;
  t.is(admitted, 100, 'exactly the 100 reservations the budget holds');
  t.like(await ledger.getBudget('task', 'race'), { reserved_usd: 1, remaining_usd: 0 });
  await Promise.all(ids.filter((_, i) => outcomes[i] === undefined).map((id) => ledger.settle(id, 0.004, 'settled', 0)));
  const after = (await ledger.getBudget('task', 'race'))!;
  t.is(Math.round(after.spent_usd * 1e6), 400_000);
  t.is(after.reserved_usd, 0);
});

test('rate counters are shared, refused takes consume nothing, token estimates are refunded', async (t) => {
  // One fixed moment in the middle of a window, so the test never straddles two windows.
  const at = Math.floor(Date.now() / 60_000) * 60_000 + 30_000;
  const fixed = createLedger({ knex: db.knex, now: () => at });
  await fixed.setBudget('task', 'rl', 10, 'test');
  const takes = [
    { key: 'rpm:subject:w1', limit: 4, amount: 1, tokens: false },
    { key: 'tpm:subject:w1', limit: 1000, amount: 300, tokens: true },
  ];
  const ids = [randomUUID(), randomUUID(), randomUUID()];
  t.is(await fixed.admit(ids[0]!, [task('rl')], 0.01, takes, later()), undefined);
  t.is(await fixed.admit(ids[1]!, [task('rl')], 0.01, takes, later()), undefined);
  t.is(await fixed.admit(ids[2]!, [task('rl')], 0.01, takes, later()), undefined);
  const refused = await fixed.admit(randomUUID(), [task('rl')], 0.01, takes, later());
  t.like(refused, { reason: 'rate_limited', key: 'tpm:subject:w1' }, '900 of 1000 tokens used; 300 more do not fit');
  // The window slides: the first take frees a full window after it was made.
  t.true(refused?.reason === 'rate_limited' && refused.retryAfterMs === 60_000);
  // The first call used 50 tokens of the 300 it took: 250 come back, so a 4th call fits; a 5th exceeds the RPM.
  await fixed.settle(ids[0]!, 0.001, 'settled', 250);
  t.is(await fixed.admit(randomUUID(), [task('rl')], 0.01, takes, later()), undefined);
  t.like(await fixed.admit(randomUUID(), [task('rl')], 0.01, takes, later()), { reason: 'rate_limited', key: 'rpm:subject:w1' });
  t.like(await fixed.getBudget('task', 'rl'), { reserved_usd: 0.03 }, 'refused calls reserved nothing');
});

test('a reservation nobody settles lapses and is charged in full', async (t) => {
  await ledger.setBudget('task', 'lapse', 1, 'test');
  const id = randomUUID();
  t.is(await ledger.admit(id, [task('lapse')], 0.3, [], new Date(Date.now() - 1)), undefined);
  t.true((await ledger.reap()) >= 1);
  t.like(await ledger.getBudget('task', 'lapse'), { reserved_usd: 0, spent_usd: 0.3 });
  t.false(await ledger.settle(id, 0.01, 'settled', 0), 'a late settlement is refused');
});
