import test from 'ava';
import { createJobWaker, jobsNotice, onJobsNotice } from '../../src/jobs/wake.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call, eventually } from '../helpers/http.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

// Waiting polls cost nothing while no work appears, and new work wakes only as many of them
// as it needs; what an announcement misses, the queue watch finds. The watch looks every
// 300 ms here, so "a whole interval" is short enough to wait for.
const WATCH_MS = 300;
let gw: BootedGateway;
let base: string;
let psk: string;

test.before(async () => {
  gw = await bootGateway({ env: { CYNODE_JOB_WAKE_FALLBACK_MS: String(WATCH_MS) }, roles: ['control'] });
  base = gw.url();
  psk = (await createPsk(base)).secret;
});
test.after.always(() => gw?.stop());

const localWorker = (nodeId: string, model: string): Promise<TestWorker> =>
  registerWorker(base, psk, {
    node_id: nodeId,
    labels: ['local'],
    region: 'onprem',
    inference_mode: 'ollama_local',
    supported_providers: [],
    provider: undefined,
    supported_models: [model],
    max_concurrency: 1,
  });

/** One series of `/metrics` (name with labels as exposed); 0 when absent. */
async function metric(series: string): Promise<number> {
  const res = await fetch(`${base}/metrics`);
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
const emptyClaims = () => metric('cynode_job_claims_total{found="none"}');
const waiting = () => metric('cynode_job_polls_waiting');

test('the waker wakes polls, oldest first, until the jobs they want cover the jobs that appeared', async (t) => {
  const waker = createJobWaker();
  const woken: string[] = [];
  const waits = ['a', 'b', 'c'].map((name) => waker.wait(5000, undefined, { want: 2 }).then((w) => w && woken.push(name)));
  waker.wake(3);
  await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(woken, ['a', 'b'], 'two polls wanting two each cover three jobs; the third keeps waiting');
  t.is(waker.waiting(), 1);
  t.is(waker.missed(), 0);
  waker.wake();
  await Promise.all(waits);
  t.deepEqual(woken, ['a', 'b', 'c'], 'a wake without a count wakes every poll');
});

test('a wake no poll was waiting for is not lost: a poll that claimed meanwhile does not wait', async (t) => {
  const waker = createJobWaker();
  const since = waker.missed();
  waker.wake(1); // nobody waits: the poll that reads `since` is busy claiming
  t.is(waker.missed(), since + 1);
  t.true(await waker.wait(5000, undefined, { since }), 'answered at once, woken');
  const later = waker.missed();
  const started = Date.now();
  t.false(await waker.wait(50, undefined, { since: later }), 'no wake missed since: it waits out its time');
  t.true(Date.now() - started >= 45);
});

test("a replica's own notices are skipped; another replica's wake polls for the jobs they announce", async (t) => {
  const waker = createJobWaker();
  const other = createJobWaker();
  let woken = 0;
  const waits = [1, 2, 3].map(() => waker.wait(5000).then((w) => void (w && woken++)));
  onJobsNotice(waker, jobsNotice(waker.origin, 5));
  await new Promise((r) => setTimeout(r, 10));
  t.is(woken, 0, 'its own submission woke its polls already');
  onJobsNotice(waker, jobsNotice(other.origin, 2));
  await new Promise((r) => setTimeout(r, 10));
  t.is(woken, 2);
  onJobsNotice(waker, undefined); // the listener reconnected: anything may have been missed
  await Promise.all(waits);
  t.is(woken, 3);
});

test.serial('a waiting poll makes no claim while no work appears, and a new job wakes one of two waiting polls', async (t) => {
  const a = await localWorker('local-wake-a', 'm-wake');
  const b = await localWorker('local-wake-b', 'm-wake');
  const polls = [poll(base, a, { wait_ms: 8000 }), poll(base, b, { wait_ms: 8000 })];
  await eventually(async () => (await waiting()) === 2, 5000);
  const before = await emptyClaims();
  await new Promise((r) => setTimeout(r, WATCH_MS * 4));
  t.is(await emptyClaims(), before, 'several watch intervals passed: no poll claimed on an empty queue');

  const id = String((await submitJob(base, { requirements: { models: ['m-wake'] } })).body.id);
  const first = await Promise.race(polls.map((p, i) => p.then((r) => ({ i, jobs: r.body.jobs }))));
  t.deepEqual(
    first.jobs.map((j) => j.job_id),
    [id],
  );
  await new Promise((r) => setTimeout(r, 200));
  t.is(await waiting(), 1, 'the other poll was not woken for a job it could not have');
  t.is(await emptyClaims(), before, 'no poll was woken for nothing');
  // End the other poll: a job for it.
  const next = String((await submitJob(base, { requirements: { models: ['m-wake'] } })).body.id);
  const other = await polls[1 - first.i]!;
  t.deepEqual(
    other.body.jobs.map((j) => j.job_id),
    [next],
  );
});

test.serial('a job no one announced (a missed NOTIFY) reaches a waiting poll through the queue watch', async (t) => {
  const w = await localWorker('local-watch-01', 'm-watch');
  const started = Date.now();
  const pending = poll(base, w, { wait_ms: 10_000 });
  await eventually(async () => (await waiting()) === 1, 5000);
  // Straight into the table, as another replica's submission whose NOTIFY never arrived.
  const [row] = (
    await gw.gateway.db.knex.raw(
      `INSERT INTO jobs (id, task_id, user_id, requirements, preferences, estimated_cost_usd, payload, priority, max_attempts, timeout_ms,
                       state, available_at, submitted_by, created_at, updated_at)
     VALUES (gen_random_uuid(), 'task-watch', 'user-1', '{"models":["m-watch"]}', '{}', 0.01, '{"kind":"echo"}', 0, 3, 600000,
             'queued', now(), 'elsewhere', now(), now())
     RETURNING id`,
    )
  ).rows as { id: string }[];
  const res = await pending;
  const ms = Date.now() - started;
  t.deepEqual(
    res.body.jobs.map((j) => j.job_id),
    [row!.id],
  );
  t.true(ms < WATCH_MS * 4 + 2000, `leased ${ms} ms after the poll began`);
  t.log(`an unannounced job reached the waiting poll in ${ms} ms (watch interval ${WATCH_MS} ms)`);
  const view = await call<{ state: string }>(base, `/v1/jobs/${row!.id}`);
  t.is(view.body.state, 'leased');
});
