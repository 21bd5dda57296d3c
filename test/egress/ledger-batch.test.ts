import { randomUUID } from 'node:crypto';
import test from 'ava';
import pino from 'pino';
import { createLedger, type Hold, type Ledger, type RateTake } from '../../src/egress/ledger.js';
import { connectAndMigrate, type Database } from '../../src/storage/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

// Two replicas: two pools on one database, each ledger group-committing its own calls.
let tdb: TestDatabase;
const dbs: Database[] = [];
const ledgers: Ledger[] = [];

test.before(async () => {
  tdb = await createTestDatabase();
  for (let i = 0; i < 2; i++) {
    const db = await connectAndMigrate(
      { url: tdb.url, dataDir: '', poolMax: 10, connectTimeoutMs: 5000, startupTimeoutMs: 0 },
      pino({ level: 'silent' }),
    );
    dbs.push(db);
    ledgers.push(createLedger({ knex: db.knex }));
  }
});
test.after.always(async () => {
  for (const db of dbs) await db.close();
  await tdb?.drop();
});

const later = () => new Date(Date.now() + 60_000);

// Calls whose budgets and rate keys overlap in every order, so batches on both replicas lock the same rows and keys.
function mixedCall(i: number): { holds: Hold[]; takes: RateTake[] } {
  const users = ['ua', 'ub', 'uc'];
  const holds: Hold[] = [
    { scope: 'task', subject_id: `t${i % 2}`, required: true },
    { scope: 'user', subject_id: users[i % 3]!, required: false },
    { scope: 'user', subject_id: users[(i + 1) % 3]!, required: false },
    { scope: 'project', subject_id: 'shared', required: false },
  ];
  const keys = ['rpm:k1', 'rpm:k2', 'rpm:k3'];
  const takes = [keys[i % 3]!, keys[(i + 2) % 3]!].map((key) => ({ key, limit: 60, amount: 1, tokens: false }));
  return { holds: i % 2 === 0 ? holds : [...holds].reverse(), takes: i % 4 < 2 ? takes : [...takes].reverse() };
}

test('group-committed admissions and settlements on two replicas never deadlock, overspend or exceed a rate limit', async (t) => {
  // The project budget holds 100 calls of $0.01; each rate key 60 calls, and a call takes two of the three keys.
  for (const id of ['t0', 't1']) await ledgers[0]!.setBudget('task', id, 10, 'test');
  for (const id of ['ua', 'ub', 'uc']) await ledgers[0]!.setBudget('user', id, 10, 'test');
  await ledgers[0]!.setBudget('project', 'shared', 1, 'test');
  const ids = Array.from({ length: 400 }, () => randomUUID());
  const outcomes = await Promise.all(
    ids.map((id, i) => {
      const { holds, takes } = mixedCall(i);
      return ledgers[i % 2]!.admit(id, holds, 0.01, takes, later());
    }),
  );
  const admitted = ids.filter((_, i) => outcomes[i] === undefined);
  t.true(outcomes.every((o) => o === undefined || o.reason === 'budget_exceeded' || o.reason === 'rate_limited'));
  t.true(outcomes.some((o) => o?.reason === 'rate_limited'));
  const used = (await dbs[0]!
    .knex('rate_events')
    .whereLike('key', 'rpm:k%')
    .groupBy('key')
    .select('key', dbs[0]!.knex.raw('sum(amount)::int AS n'))) as {
    key: string;
    n: number;
  }[];
  t.true(
    used.every((u) => u.n <= 60),
    `no rate key past its limit: ${JSON.stringify(used)}`,
  );
  t.is(
    used.reduce((n, u) => n + u.n, 0),
    2 * admitted.length,
    'only admitted calls took from the rate keys',
  );
  t.true(admitted.length <= 90, 'three keys of 60, two per call');
  t.like(await ledgers[1]!.getBudget('project', 'shared'), { reserved_usd: admitted.length / 100 });
  const settled = await Promise.all(admitted.map((id, i) => ledgers[i % 2]!.settle(id, 0.004, 'settled', 0)));
  t.true(settled.every(Boolean));
  t.false(await ledgers[1]!.settle(admitted[0]!, 0.004, 'settled', 0), 'a second settlement changes nothing');
  const project = (await ledgers[0]!.getBudget('project', 'shared'))!;
  t.is(Math.round(project.spent_usd * 1e6), 4000 * admitted.length);
  t.is(project.reserved_usd, 0);
  const [t0, t1] = [(await ledgers[0]!.getBudget('task', 't0'))!, (await ledgers[0]!.getBudget('task', 't1'))!];
  t.is(Math.round((t0.spent_usd + t1.spent_usd) * 1e6), 4000 * admitted.length, 'every settlement charged its task once');
});

test('a batch admits in order: each call sees the ones before it, and a refused one holds nothing', async (t) => {
  await ledgers[0]!.setBudget('task', 'order', 0.05, 'test');
  const takes = [{ key: 'rpm:order', limit: 3, amount: 1, tokens: false }];
  // Submitted in one tick, so they travel in one statement.
  const hold = [{ scope: 'task' as const, subject_id: 'order', required: true }];
  const outcomes = await Promise.all(Array.from({ length: 6 }, () => ledgers[0]!.admit(randomUUID(), hold, 0.02, takes, later())));
  t.deepEqual(
    outcomes.map((o) => o?.reason ?? 'ok'),
    ['ok', 'ok', 'budget_exceeded', 'budget_exceeded', 'budget_exceeded', 'budget_exceeded'],
    'two fit the budget; the refused ones took no rate unit, so the limit of 3 is never reached',
  );
  t.like(await ledgers[0]!.getBudget('task', 'order'), { reserved_usd: 0.04 });
  t.like(await ledgers[0]!.admit(randomUUID(), [{ scope: 'task', subject_id: 'nobody', required: true }], 0.01, takes, later()), {
    reason: 'budget_missing',
  });
});

test('settlements and admissions sharing statements on two replicas keep every budget balanced', async (t) => {
  // Room for 50 calls of $0.02 held at once; each settles at $0.01, so settling frees room for later admissions.
  await ledgers[0]!.setBudget('task', 'mixed', 1, 'test');
  await ledgers[0]!.setBudget('user', 'um', 100, 'test');
  const holds: Hold[] = [
    { scope: 'task', subject_id: 'mixed', required: true },
    { scope: 'user', subject_id: 'um', required: false },
  ];
  const takes = [{ key: 'tpm:mixed', limit: 1_000_000, amount: 100, tokens: true }];
  let admitted = 0;
  // 300 calls across both replicas, each settled as soon as it is admitted, so admissions and settlements interleave.
  await Promise.all(
    Array.from({ length: 300 }, async (_, i) => {
      const ledger = ledgers[i % 2]!;
      const id = randomUUID();
      if ((await ledger.admit(id, holds, 0.02, takes, later())) !== undefined) return;
      admitted++;
      t.true(await ledger.settle(id, 0.01, 'settled', 60));
    }),
  );
  const task = (await ledgers[1]!.getBudget('task', 'mixed'))!;
  t.is(task.reserved_usd, 0, 'every admitted call settled');
  t.is(Math.round(task.spent_usd * 1e6), admitted * 10_000);
  t.true(task.spent_usd <= 1, 'never past the limit');
  t.true(admitted >= 50, `at least what the budget holds at once was admitted (${admitted})`);
  t.is(Math.round((await ledgers[0]!.getBudget('user', 'um'))!.spent_usd * 1e6), admitted * 10_000);
  const { n } = (await dbs[0]!.knex('rate_events').where({ key: 'tpm:mixed' }).first(dbs[0]!.knex.raw('sum(amount)::int AS n'))) as {
    n: number;
  };
  t.is(n, admitted * 40, 'each settlement refunded the tokens its call did not use');
});
