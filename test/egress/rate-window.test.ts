import { randomUUID } from 'node:crypto';
import test from 'ava';
import { createLedger, type Hold, type Ledger, type RateTake } from '../../src/egress/ledger.js';
import type { Database } from '../../src/storage/index.js';
import { migratedDatabase } from './migrated-database.js';

let db: Database & { drop(): Promise<void> };
let t0 = 0;
let ledger: Ledger;

test.before(async () => {
  db = await migratedDatabase();
  ledger = createLedger({ knex: db.knex, now: () => t0 });
  await ledger.setBudget('task', 'rate', 1000, 'test');
});
test.after.always(async () => {
  await db?.drop();
});

const holds: Hold[] = [{ scope: 'task', subject_id: 'rate', required: true }];
const farAway = new Date('2030-01-01T00:00:00Z');
const rpm = (key: string, limit: number): RateTake => ({ key, limit, amount: 1, tokens: false });
const admitAt = async (at: number, takes: RateTake[], n: number) => {
  t0 = at;
  const ids = Array.from({ length: n }, () => randomUUID());
  const results = await Promise.all(ids.map((id) => ledger.admit(id, holds, 0.001, takes, farAway)));
  return { ids: ids.filter((_, i) => results[i] === undefined), refusals: results.filter((r) => r !== undefined) };
};

test.serial(
  'a burst at the window boundary: the limit at 0:59 and again at 1:00 is refused, and Retry-After is when the first unit frees',
  async (t) => {
    const minute = Date.parse('2026-12-01T10:01:00Z');
    const takes = [rpm('rpm:boundary', 5)];
    t.is((await admitAt(minute - 1000, takes, 100)).ids.length, 5, 'the limit at 0:59, of 100 at once');
    // A fixed window would start over at 1:00 and let 5 more through: 10 within two seconds.
    const at1 = await admitAt(minute, takes, 5);
    t.is(at1.ids.length, 0);
    t.like(at1.refusals[0], { reason: 'rate_limited', key: 'rpm:boundary', retryAfterMs: 59_000 });
    t.is((await admitAt(minute - 1000 + 59_999, takes, 1)).ids.length, 0, 'still within 60 s of the burst');
    t.is((await admitAt(minute - 1000 + 60_000, takes, 6)).ids.length, 5, 'a full window later, the limit again');
  },
);

test.serial('no 60 s span ever admits more than the limit, with bursts arriving every few seconds', async (t) => {
  const limit = 7;
  const takes = [rpm('rpm:sweep', limit)];
  const start = Date.parse('2026-12-01T11:00:00Z');
  const admitted: number[] = [];
  for (let at = start; at < start + 300_000; at += 4_300) {
    const { ids } = await admitAt(at, takes, 3);
    admitted.push(...ids.map(() => at));
  }
  t.true(admitted.length >= (300_000 / 60_000) * limit - limit, `the limit is used, not starved (${admitted.length})`);
  for (const from of admitted) {
    const inSpan = admitted.filter((a) => a >= from && a < from + 60_000).length;
    t.true(inSpan <= limit, `${inSpan} admitted in the 60 s from ${new Date(from).toISOString()}`);
  }
});

test.serial('TPM reserves the estimate and reconciles to the real usage, down and up', async (t) => {
  const at = Date.parse('2026-12-01T12:00:30Z');
  const tpm = (amount: number): RateTake[] => [{ key: 'tpm:reconcile', limit: 1000, amount, tokens: true }];
  const first = await admitAt(at, tpm(800), 1);
  t.is(first.ids.length, 1);
  t.is((await admitAt(at, tpm(300), 1)).ids.length, 0, '800 estimated: 300 more do not fit');
  // It used 100 of the 800 it took.
  t.true(await ledger.settle(first.ids[0]!, 0.001, 'settled', 700));
  const second = await admitAt(at + 1000, tpm(850), 1);
  t.is(second.ids.length, 1, '100 used: 850 more fit');
  // The estimate of 850 fell 50 short: the real 900 count.
  t.true(await ledger.settle(second.ids[0]!, 0.001, 'settled', -50));
  const refused = await admitAt(at + 2000, tpm(1), 1);
  t.like(refused.refusals[0], { reason: 'rate_limited' }, '100 + 900 = the whole limit');
  t.like(refused.refusals[0], { retryAfterMs: 58_000 }, 'the first call’s 100 free 60 s after it, 58 s from now');
  const { rows } = (await db.knex.raw(`SELECT sum(amount)::int AS n FROM rate_events WHERE key = 'tpm:reconcile'`)) as {
    rows: { n: number }[];
  };
  t.is(rows[0]!.n, 1000);
});

test.serial('the reaper drops rate takes once they are past every window', async (t) => {
  const at = Date.parse('2026-12-01T13:00:00Z');
  await admitAt(at, [rpm('rpm:reaped', 10)], 2);
  t0 = at + 3 * 60_000;
  await ledger.reap();
  t.is((await db.knex('rate_events').where({ key: 'rpm:reaped' })).length, 0);
});
