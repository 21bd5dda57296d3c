import { randomUUID } from 'node:crypto';
import test from 'ava';
import { createContextReader } from '../../src/egress/input.js';
import { jobRow } from '../helpers/fixtures.js';
import { migratedDatabase } from './migrated-database.js';

let db: Awaited<ReturnType<typeof migratedDatabase>>;
test.before(async () => {
  db = await migratedDatabase();
});
test.after.always(async () => db?.drop());

/** A job of task `task-reuse`, leased by `n1` until `leaseUntil` (or queued with none): the context key of a call for it. */
async function jobKey(leaseUntil: number | null) {
  const id = randomUUID();
  const at = new Date();
  await db.knex('jobs').insert(jobRow(id, 'task-reuse', at, leaseUntil === null ? undefined : { node: 'n1', until: new Date(leaseUntil) }));
  return { job_id: id, task_id: 'task-reuse', model: 'm', subject_id: 'n1' };
}

test('a context read answers the same call again only while lease ends are heard, and not past a lease end', async (t) => {
  let clock = Date.now();
  let listening = true;
  const reader = createContextReader(db.knex, () => clock, { reuseMs: 250, listening: () => listening });
  const key = await jobKey(clock + 3_600_000);
  const first = await reader.read(key);
  t.is(first.job?.leased_by, 'n1');
  t.is(await reader.read(key), first, 'answered from memory');
  clock += 251;
  const second = await reader.read(key);
  t.not(second, first, 'read again once the reuse time is over');
  reader.leaseEnded('n1');
  t.not(await reader.read(key), second, 'read again after a lease ended');
  listening = false;
  const third = await reader.read(key);
  t.not(await reader.read(key), third, 'every call reads while the listener is down');
});

test('a read that overlapped a lease end is not remembered, nor a job not leased, nor a lease that has run out', async (t) => {
  const clock = Date.now();
  const reader = createContextReader(db.knex, () => clock, { reuseMs: 250, listening: () => true });
  const leased = await jobKey(clock + 3_600_000);
  const pending = reader.read(leased);
  reader.leaseEnded();
  const overlapped = await pending;
  t.not(await reader.read(leased), overlapped, 'the read that overlapped the end is read again');
  const queued = await jobKey(null);
  const notLeased = await reader.read(queued);
  t.is(notLeased.job?.state, 'queued');
  t.not(await reader.read(queued), notLeased, 'a job not leased is read again: the start of its lease is not announced');
  const lapsed = await jobKey(clock - 1);
  const once = await reader.read(lapsed);
  t.not(await reader.read(lapsed), once, 'a lease already past its expiry is read again');
});

test('without reuse every call reads', async (t) => {
  const reader = createContextReader(db.knex, Date.now, { reuseMs: 0, listening: () => true });
  const key = await jobKey(Date.now() + 3_600_000);
  const a = await reader.read(key);
  t.not(await reader.read(key), a);
  t.deepEqual(await reader.read(key), a, 'the same context, read again');
});

test('past half its reuse time a context is read again in the background: the caller is answered at once', async (t) => {
  let clock = Date.now();
  const reader = createContextReader(db.knex, () => clock, { reuseMs: 250, listening: () => true });
  const key = await jobKey(clock + 3_600_000);
  const first = await reader.read(key);
  clock += 130;
  t.is(await reader.read(key), first, 'answered from memory while the next read runs');
  await new Promise((resolve) => setTimeout(resolve, 200));
  const next = await reader.read(key);
  t.not(next, first, 'the background read replaced it');
  clock += 200;
  t.is(await reader.read(key), next, 'and its reuse time counts from when it was read');
});
