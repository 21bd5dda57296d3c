import { randomUUID } from 'node:crypto';
import test from 'ava';
import { BLOCK_DEFAULTS, type BlockCall, createBlockAdmission } from '../../src/egress/blocks.js';
import { createLedger, type RateTake } from '../../src/egress/ledger.js';
import { eventually } from '../helpers/http.js';
import { migratedDatabase } from './migrated-database.js';

let db: Awaited<ReturnType<typeof migratedDatabase>>;
test.before(async () => {
  db = await migratedDatabase();
});
test.after.always(async () => db?.drop());

const task = (id: string) => [{ scope: 'task' as const, subject_id: id, required: true }];
const inAMinute = () => new Date(Date.now() + 60_000);

/** One call of a burst: worst case `amountUsd`, one unit of `rpm:<id>` and `tokens` of `tpm:<id>`. */
function call(id: string, amountUsd: number, limits: { rpm: number; tpm?: number; tokens?: number }, roomUsd: number | null): BlockCall {
  const takes: RateTake[] = [{ key: `rpm:${id}`, limit: limits.rpm, amount: 1, tokens: false }];
  if (limits.tpm) takes.push({ key: `tpm:${id}`, limit: limits.tpm, amount: limits.tokens ?? 100, tokens: true });
  return { callId: randomUUID(), holds: task(id), amountUsd, takes, expiresAt: inAMinute(), roomUsd, periodEndsAt: null };
}

/** `n` concurrent calls of one task with a budget of `budgetUsd`, admitted through prepaid blocks. */
async function burst(taskId: string, budgetUsd: number, n: number, limits: Parameters<typeof call>[2], roomUsd: number) {
  const ledger = createLedger({ knex: db.knex });
  const blocks = createBlockAdmission(ledger, BLOCK_DEFAULTS);
  await ledger.setBudget('task', taskId, budgetUsd, 'test');
  const calls = Array.from({ length: n }, () => call(taskId, 0.01, limits, roomUsd));
  const outcomes = await Promise.all(calls.map((c) => blocks.admit(c)));
  return { ledger, blocks, calls, outcomes };
}

const reservations = async (taskId: string) =>
  (
    (await db.knex.raw(`SELECT count(*)::int AS n FROM budget_reservations WHERE holds @> ?::jsonb AND state <> 'refused'`, [
      JSON.stringify([{ subject_id: taskId }]),
    ])) as { rows: { n: number }[] }
  ).rows[0]!.n;
const rateTotal = async (key: string) =>
  Number(((await db.knex('rate_events').where({ key }).sum({ s: 'amount' })) as { s: string | null }[])[0]!.s ?? 0);

test('a burst draws from prepaid blocks: fewer reservations than calls, and once settled the spend and rate takes are exactly the calls’', async (t) => {
  const { ledger, blocks, calls, outcomes } = await burst('burst', 100, 200, { rpm: 100_000, tpm: 100_000_000, tokens: 100 }, 100);
  t.deepEqual(
    outcomes.filter((o) => o !== undefined),
    [],
    'every call is admitted',
  );
  const held = await reservations('burst');
  t.true(held < 50, `the burst took ${held} reservations for 200 calls`);
  t.true((await ledger.getBudget('task', 'burst'))!.reserved_usd >= 2, 'the blocks hold at least the burst’s worst case');
  // Each call used 60 of its 100 estimated tokens and cost $0.004.
  const drew = calls.filter((c) => blocks.settle(c.callId, 0.004, 'settled', 40));
  t.true(drew.length > 150, `${drew.length} of 200 calls drew from a block`);
  t.false(blocks.settle(drew[0]!.callId, 0.004, 'settled', 40), 'a call settles into its block once');
  await Promise.all(calls.filter((c) => !drew.includes(c)).map((c) => ledger.settle(c.callId, 0.004, 'settled', 40)));
  await blocks.flush();
  const after = (await ledger.getBudget('task', 'burst'))!;
  t.is(Math.round(after.spent_usd * 1e6), 200 * 4000);
  t.is(after.reserved_usd, 0);
  t.is(await rateTotal('rpm:burst'), 200, 'the calls a block did not admit were given back');
  t.is(await rateTotal('tpm:burst'), 200 * 60, 'tokens are reconciled to the real count');
});

test('prepaid blocks never overspend a budget: a burst three times its size admits exactly what it holds', async (t) => {
  // The room each call reports is stale (as it is when many replicas draw): the ledger still decides.
  const { ledger, blocks, calls, outcomes } = await burst('small', 1, 300, { rpm: 100_000 }, 1);
  const admitted = calls.filter((_, i) => outcomes[i] === undefined);
  t.is(admitted.length, 100, 'exactly the 100 calls the budget holds');
  t.true(
    outcomes.every((o) => o === undefined || o.reason === 'budget_exceeded'),
    'every other call is refused for the budget',
  );
  t.like(await ledger.getBudget('task', 'small'), { remaining_usd: 0 });
  await Promise.all(admitted.map((c) => blocks.settle(c.callId, 0.01, 'settled', 0) || ledger.settle(c.callId, 0.01, 'settled', 0)));
  await blocks.flush();
  t.like(await ledger.getBudget('task', 'small'), { spent_usd: 1, reserved_usd: 0 });
  t.is(await rateTotal('rpm:small'), 100);
});

test('prepaid blocks never exceed a rate limit: a burst admits exactly the limit, and the rest wait for the window', async (t) => {
  const { ledger, blocks, calls, outcomes } = await burst('limited', 100, 100, { rpm: 30 }, 100);
  t.is(outcomes.filter((o) => o === undefined).length, 30, 'exactly the limit');
  const refusals = outcomes.filter((o) => o !== undefined);
  t.true(refusals.every((o) => o.reason === 'rate_limited'));
  // A block's takes count from the end of its draw window, so the first unit frees at least a window after now.
  const wait = Math.min(...refusals.map((o) => (o.reason === 'rate_limited' ? o.retryAfterMs : 0)));
  t.true(wait > 59_000, `retry after ${wait} ms`);
  const admitted = calls.filter((_, i) => outcomes[i] === undefined);
  await Promise.all(admitted.map((c) => blocks.settle(c.callId, 0.001, 'settled', 0) || ledger.settle(c.callId, 0.001, 'settled', 0)));
  await blocks.flush();
  t.is(await rateTotal('rpm:limited'), 30);
});

test('a call is admitted alone when its budget has little room, its period is about to end, or blocks are off', async (t) => {
  const ledger = createLedger({ knex: db.knex });
  await ledger.setBudget('task', 'alone', 100, 'test');
  const cases: [string, (c: BlockCall) => BlockCall, number][] = [
    ['little room', (c) => ({ ...c, roomUsd: 0.15 }), BLOCK_DEFAULTS.drawMs],
    ['no task budget seen', (c) => ({ ...c, roomUsd: null }), BLOCK_DEFAULTS.drawMs],
    ['the period ends', (c) => ({ ...c, periodEndsAt: Date.now() + 20 }), BLOCK_DEFAULTS.drawMs],
    ['blocks off', (c) => c, 0],
  ];
  for (const [why, shape, drawMs] of cases) {
    const blocks = createBlockAdmission(ledger, { ...BLOCK_DEFAULTS, drawMs });
    const before = await reservations('alone');
    const calls = Array.from({ length: 20 }, () => shape(call('alone', 0.01, { rpm: 100_000 }, 100)));
    t.deepEqual(
      (await Promise.all(calls.map((c) => blocks.admit(c)))).filter((o) => o !== undefined),
      [],
      why,
    );
    t.is((await reservations('alone')) - before, 20, `${why}: one reservation per call`);
    t.true(
      calls.every((c) => !blocks.settle(c.callId, 0.001, 'settled', 0)),
      `${why}: the calls settle in the ledger`,
    );
    await Promise.all(calls.map((c) => ledger.settle(c.callId, 0.001, 'settled', 0)));
  }
});

test.serial('a prepaid block nobody settles (its replica died) lapses and is charged in full', async (t) => {
  let clock = Date.now();
  const ledger = createLedger({ knex: db.knex, now: () => clock });
  const blocks = createBlockAdmission(ledger, BLOCK_DEFAULTS);
  await ledger.setBudget('task', 'died', 10, 'test');
  const calls = Array.from({ length: 20 }, () => ({ ...call('died', 0.01, { rpm: 100_000 }, 10), expiresAt: new Date(clock + 60_000) }));
  t.deepEqual(
    (await Promise.all(calls.map((c) => blocks.admit(c)))).filter((o) => o !== undefined),
    [],
  );
  const reserved = (await ledger.getBudget('task', 'died'))!.reserved_usd;
  t.true(reserved >= 0.2, `the blocks hold ${reserved}`);
  // Nothing settles; past the block's draw window and the call's lifetime the reaper charges it all.
  clock += 62_000;
  t.true((await ledger.reap()) >= 1);
  t.like(await ledger.getBudget('task', 'died'), { spent_usd: reserved, reserved_usd: 0 });
});

test('a steady stream draws from the next block, opened while the current one still admits', async (t) => {
  let clock = Date.now();
  const ledger = createLedger({ knex: db.knex, now: () => clock });
  const blocks = createBlockAdmission(ledger, BLOCK_DEFAULTS);
  await ledger.setBudget('task', 'steady', 100, 'test');
  const made: BlockCall[] = [];
  const admit = (c: BlockCall) => {
    made.push(c);
    return blocks.admit({ ...c, expiresAt: new Date(clock + 60_000) });
  };
  const first = Array.from({ length: 10 }, () => call('steady', 0.01, { rpm: 100_000 }, 100));
  t.deepEqual(
    (await Promise.all(first.map(admit))).filter((o) => o !== undefined),
    [],
  );
  const opened = await reservations('steady');
  // Past half the first block's window, a call still draws from it and the next block opens.
  clock += 600;
  t.is(await admit(call('steady', 0.01, { rpm: 100_000 }, 100)), undefined);
  await eventually(async () => (await reservations('steady')) > opened, 5000);
  t.is(await reservations('steady'), opened + 1, 'the next block was opened ahead');
  // Once the first block's window has ended, calls draw from the next without a new admission.
  // Not yet half through the next block's window, so no third block opens.
  clock += 450;
  for (let i = 0; i < 3; i++) t.is(await admit(call('steady', 0.01, { rpm: 100_000 }, 100)), undefined);
  t.is(await reservations('steady'), opened + 1);
  await Promise.all(made.map((c) => blocks.settle(c.callId, 0.001, 'settled', 0) || ledger.settle(c.callId, 0.001, 'settled', 0)));
  await blocks.flush();
  t.like(await ledger.getBudget('task', 'steady'), { reserved_usd: 0 });
});
