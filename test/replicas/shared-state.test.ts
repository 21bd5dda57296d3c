import { randomBytes } from 'node:crypto';
import test from 'ava';
import pg from 'pg';
import { RATE_WINDOW_MS } from '../../src/egress/ledger.js';
import { ensureBundle } from '../helpers/bundle.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { call, eventually } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { type Replicas, startReplicas } from '../helpers/replicas.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

// Three replicas share one queue, one set of rate counters and one set of budgets: workers
// polling all three at once never get the same job twice, and a worker's RPM and a task's
// budget hold across the three as if there were one gateway.

const JOBS = 150;
let db: TestDatabase;
let fake: FakeProvider;
let group: Replicas;
let psk: string;

test.before(async () => {
  await ensureBundle();
  fake = await startFakeProvider();
  db = await createTestDatabase();
  group = await startReplicas(3, {
    DATABASE_URL: db.url,
    CYNODE_OPENAI_BASE_URL: fake.url,
    CYNODE_MASTER_KEY: randomBytes(32).toString('base64'),
  });
  const u0 = group.urls()[0]!;
  psk = (await createPsk(u0)).secret;
  await call(u0, '/v1/credentials', { json: { provider: 'openai', name: 'main', secret: `sk-shared-${randomBytes(16).toString('hex')}` } });
  await call(u0, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
});
test.after.always(async () => {
  await group?.stop();
  await fake?.close();
  await db?.drop();
});

test.serial('nine workers polling three replicas at once never get the same job twice', async (t) => {
  const urls = group.urls();
  const workers: TestWorker[] = [];
  for (let i = 0; i < 9; i++)
    workers.push(
      await registerWorker(urls[i % 3]!, psk, {
        node_id: `local-lease-${i}`,
        labels: ['local'],
        region: 'onprem',
        inference_mode: 'ollama_local',
        supported_providers: [],
        provider: undefined,
        max_concurrency: 64,
      }),
    );
  await Promise.all(
    Array.from({ length: JOBS }, (_, i) => submitJob(urls[i % 3]!, { task_id: `task-lease-${i}`, requirements: { labels: ['local'] } })),
  );
  const handed: string[] = [];
  // Every worker polls its replica in a tight loop until the queue is drained.
  const deadline = Date.now() + 30_000;
  await Promise.all(
    workers.map(async (w, i) => {
      while (handed.length < JOBS && Date.now() < deadline) {
        const res = await poll(urls[i % 3]!, w, { max_jobs: 4 });
        t.is(res.status, 200);
        handed.push(...res.body.jobs.map((j) => j.job_id));
      }
    }),
  );
  // Nothing is left to hand out, on any replica.
  for (const [i, w] of workers.entries()) t.deepEqual((await poll(urls[i % 3]!, w)).body.jobs, []);
  t.is(handed.length, JOBS, 'every job handed out');
  t.is(new Set(handed).size, JOBS, 'and none twice');
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.teardown(() => client.end());
  const rows = (
    await client.query<{ job_id: string; n: string }>('SELECT job_id, count(*) AS n FROM job_attempts GROUP BY job_id HAVING count(*) > 1')
  ).rows;
  t.deepEqual(rows, [], 'one lease per job in the database');
  t.log(`${JOBS} jobs leased by 9 workers over 3 replicas, ${new Set(handed).size} distinct`);
});

test.serial('a worker rate limit and a task budget hold across three replicas', async (t) => {
  const urls = group.urls();
  const rpm = 6;
  await call(urls[0]!, '/v1/budgets/task/task-shared', { method: 'PUT', json: { limit_usd: 10 } });
  const worker = await registerWorker(urls[1]!, psk, { node_id: 'cloud-shared-rl', rate_limits: { rpm } });
  const job = String(
    (await submitJob(urls[2]!, { task_id: 'task-shared', requirements: { labels: ['cloud'] }, payload: { kind: 'api.call' } })).body.id,
  );
  let leased = false;
  for (let i = 0; i < 50 && !leased; i++) leased = (await poll(urls[i % 3]!, worker)).body.jobs.some((j) => j.job_id === job);
  t.true(leased);
  const intoWindow = Date.now() % RATE_WINDOW_MS;
  if (intoWindow > RATE_WINDOW_MS - 15_000) await new Promise((r) => setTimeout(r, RATE_WINDOW_MS - intoWindow + 100));
  const body = {
    provider: 'openai',
    operation: 'chat.completions',
    task_id: 'task-shared',
    job_id: job,
    params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 },
  };
  // Twelve calls at once, four on each replica: exactly the worker's six per minute get through.
  const before = fake.received.length;
  const answers = await Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      call<{ error?: { code: string } }>(urls[i % 3]!, '/v1/api/call', { token: worker.token, json: body }),
    ),
  );
  const ok = answers.filter((a) => a.status === 200).length;
  t.is(ok, rpm, `${ok} admitted`);
  t.true(answers.filter((a) => a.status !== 200).every((a) => a.status === 429 && a.body.error?.code === 'rate_limited'));
  t.is(fake.received.length - before, rpm, 'the provider saw only the admitted calls');

  // A budget too small for one call is refused on every replica alike.
  await call(urls[0]!, '/v1/budgets/task/task-shared', { method: 'PUT', json: { limit_usd: 0 } });
  for (const u of urls) {
    const refused = await call<{ error: { code: string } }>(u, '/v1/api/call', { json: { ...body, job_id: undefined } });
    t.is(refused.status, 402);
    t.is(refused.body.error.code, 'budget_exceeded');
  }
  // Settlement lands just after each answer; until then the worst case stays reserved.
  const budget = async () => (await call<{ spent_usd: number; reserved_usd: number }>(urls[2]!, '/v1/budgets/task/task-shared')).body;
  await eventually(async () => (await budget()).reserved_usd === 0, 5000, 50).catch(() => undefined);
  const b = await budget();
  t.is(b.reserved_usd, 0);
  t.true(b.spent_usd > 0);
  t.log(`rpm ${rpm}: ${ok} of 12 concurrent calls over 3 replicas admitted; spent $${b.spent_usd}`);
});
