import { randomUUID } from 'node:crypto';
import test from 'ava';
import { createLedger, type Hold, type Ledger } from '../../src/egress/ledger.js';
import type { Database } from '../../src/storage/index.js';
import { migratedDatabase } from './migrated-database.js';

let db: Database & { drop(): Promise<void> };

test.before(async () => {
  db = await migratedDatabase();
});
test.after.always(async () => {
  await db?.drop();
});

/** A ledger on a clock the test moves. */
function clocked(start: string): { ledger: Ledger; set(at: string | number): void } {
  let t = Date.parse(start);
  return {
    ledger: createLedger({ knex: db.knex, now: () => t }),
    set: (at) => (t = typeof at === 'number' ? at : Date.parse(at)),
  };
}

const task = (id: string): Hold => ({ scope: 'task', subject_id: id, required: true });
const farAway = () => new Date(Date.parse('2030-01-01T00:00:00Z'));

test('a daily budget resets at UTC midnight, and its answer says when', async (t) => {
  const { ledger, set } = clocked('2026-12-01T23:59:00Z');
  const b = await ledger.setBudget('task', 'daily', 1, 'test', { period: 'day' });
  t.like(b, { period: 'day', reset: 'calendar', period_start: '2026-12-01T00:00:00.000Z', resets_at: '2026-12-02T00:00:00.000Z' });
  const a = randomUUID();
  t.is(await ledger.admit(a, [task('daily')], 0.6, [], farAway()), undefined);
  t.true(await ledger.settle(a, 0.6, 'settled', 0));
  t.like(await ledger.admit(randomUUID(), [task('daily')], 0.6, [], farAway()), { reason: 'budget_exceeded' });
  set('2026-12-01T23:59:59.999Z');
  t.like(await ledger.getBudget('task', 'daily'), { spent_usd: 0.6, remaining_usd: 0.4 });
  set('2026-12-02T00:00:00.000Z');
  t.like(
    await ledger.getBudget('task', 'daily'),
    { spent_usd: 0, remaining_usd: 1, period_start: '2026-12-02T00:00:00.000Z', resets_at: '2026-12-03T00:00:00.000Z' },
    'a new day reads fresh before any call rolls it',
  );
  t.is(await ledger.admit(randomUUID(), [task('daily')], 0.6, [], farAway()), undefined);
  const closed = await db.knex('budget_periods').where({ scope: 'task', subject_id: 'daily' }).first();
  t.like(closed, { spent_micros: '600000', reserved_micros: '0' });
  t.is(new Date(closed.period_start).toISOString(), '2026-12-01T00:00:00.000Z');
});

test('200 concurrent calls spanning midnight overspend neither day; in-flight calls are charged to the day they were reserved in', async (t) => {
  const { ledger, set } = clocked('2026-12-03T23:59:59.500Z');
  await ledger.setBudget('task', 'span', 1, 'test', { period: 'day' });
  // $0.02 each: 50 fit a day. Half the calls are reserved before midnight, half after.
  const before = Array.from({ length: 100 }, () => randomUUID());
  const after = Array.from({ length: 100 }, () => randomUUID());
  const admittedBefore = (await Promise.all(before.map((id) => ledger.admit(id, [task('span')], 0.02, [], farAway())))).map(
    (r) => r === undefined,
  );
  set('2026-12-04T00:00:00.500Z');
  // The day before's calls settle while the new day's are admitted.
  const [admittedAfter] = await Promise.all([
    Promise.all(after.map((id) => ledger.admit(id, [task('span')], 0.02, [], farAway()))),
    Promise.all(before.filter((_, i) => admittedBefore[i]).map((id) => ledger.settle(id, 0.015, 'settled', 0))),
  ]);
  const afterIds = after.filter((_, i) => admittedAfter[i] === undefined);
  t.is(admittedBefore.filter(Boolean).length, 50);
  t.is(afterIds.length, 50, 'what the old day still held never spilled into the new one');
  await Promise.all(afterIds.map((id) => ledger.settle(id, 0.01, 'settled', 0)));
  t.false(await ledger.settle(afterIds[0]!, 0.01, 'settled', 0), 'never released twice');
  const old = await db.knex('budget_periods').where({ scope: 'task', subject_id: 'span' }).first();
  t.is(Number(old.spent_micros), 50 * 15_000);
  t.is(Number(old.reserved_micros), 0);
  t.like(await ledger.getBudget('task', 'span'), { spent_usd: 0.5, reserved_usd: 0, period_start: '2026-12-04T00:00:00.000Z' });
});

test('weeks are ISO weeks from Monday, months calendar months; rolling periods count from when the period was set; the session time zone does not matter', async (t) => {
  const period = async (p: string, reset: string, anchor: string, now: string) => {
    const { rows } = (await db.knex.transaction(async (trx) => {
      await trx.raw(`SET LOCAL TIME ZONE 'America/New_York'`);
      return trx.raw('SELECT period_start, resets_at FROM cynode_budget_period(?, ?, ?::timestamptz, ?::timestamptz)', [
        p,
        reset,
        anchor,
        now,
      ]);
    })) as { rows: { period_start: Date; resets_at: Date | null }[] };
    return [rows[0]!.period_start.toISOString(), rows[0]!.resets_at?.toISOString() ?? null];
  };
  const anchor = '2026-01-31T15:00:00Z';
  t.deepEqual(await period('day', 'calendar', anchor, '2026-12-03T04:00:00Z'), ['2026-12-03T00:00:00.000Z', '2026-12-04T00:00:00.000Z']);
  t.deepEqual(await period('week', 'calendar', anchor, '2026-12-06T23:00:00Z'), ['2026-11-30T00:00:00.000Z', '2026-12-07T00:00:00.000Z']);
  t.deepEqual(await period('month', 'calendar', anchor, '2026-12-31T23:59:59Z'), ['2026-12-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z']);
  t.deepEqual(await period('day', 'rolling', anchor, '2026-02-02T14:59:59Z'), ['2026-02-01T15:00:00.000Z', '2026-02-02T15:00:00.000Z']);
  t.deepEqual(await period('week', 'rolling', anchor, '2026-02-07T15:00:00Z'), ['2026-02-07T15:00:00.000Z', '2026-02-14T15:00:00.000Z']);
  t.deepEqual(
    await period('month', 'rolling', anchor, '2026-03-01T00:00:00Z'),
    ['2026-02-28T15:00:00.000Z', '2026-03-31T15:00:00.000Z'],
    'a month from the 31st ends on the shorter month’s last day',
  );
  t.deepEqual(await period('total', 'calendar', anchor, '2026-03-01T00:00:00Z'), ['1970-01-01T00:00:00.000Z', null]);
});

test('a model budget is held beside the budget for every model; a changed period keeps what the current one spent', async (t) => {
  const { ledger } = clocked('2026-12-05T12:00:00Z');
  await ledger.setBudget('task', 'm', 10, 'test');
  const b = await ledger.setBudget('user', 'alice', 0.5, 'test', { model: 'gpt-4o', period: 'month', softLimitUsd: 0.4 });
  t.like(b, { model: 'gpt-4o', soft_limit_usd: 0.4, period_start: '2026-12-01T00:00:00.000Z', resets_at: '2027-01-01T00:00:00.000Z' });
  t.is(await ledger.getBudget('user', 'alice'), undefined, 'the model budget is not the budget for every model');
  const holds = (model: string): Hold[] => [task('m'), { scope: 'user', subject_id: 'alice', model, required: false }];
  const a = randomUUID();
  t.is(await ledger.admit(a, holds('gpt-4o'), 0.3, [], farAway()), undefined);
  t.like(await ledger.admit(randomUUID(), holds('gpt-4o'), 0.3, [], farAway()), { reason: 'budget_exceeded', scope: 'user' });
  t.is(await ledger.admit(randomUUID(), holds('gpt-4o-mini'), 0.3, [], farAway()), undefined, 'another model is not held against it');
  await ledger.settle(a, 0.3, 'settled', 0);
  const changed = await ledger.setBudget('user', 'alice', 0.5, 'test', { model: 'gpt-4o', period: 'day' });
  t.like(changed, { period: 'day', spent_usd: 0.3, period_start: '2026-12-05T00:00:00.000Z' });
  t.deepEqual(
    (await ledger.listBudgets('user')).map((x) => [x.id, x.model]),
    [['alice', 'gpt-4o']],
  );
});
