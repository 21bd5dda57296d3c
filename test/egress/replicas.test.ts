import { randomBytes } from 'node:crypto';
import test from 'ava';
import { RATE_WINDOW_MS } from '../../src/egress/ledger.js';
import { ensureBundle } from '../helpers/bundle.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { type GatewayProcess, startGatewayProcess } from '../helpers/gateway.js';
import { call, eventually } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { createPsk, poll, registerWorker, submitJob } from '../helpers/workers.js';

// Two gateway processes on one PostgreSQL share the rate limits and the budgets: a worker
// that declared 4 requests per minute gets 4 calls in all, whichever replica it asks.
const KEY = `sk-rep-${randomBytes(16).toString('hex')}`;
const MASTER = randomBytes(32).toString('base64');
let db: TestDatabase;
let fake: FakeProvider;
let a: GatewayProcess;
let b: GatewayProcess;
const url = (g: GatewayProcess) => `http://127.0.0.1:${g.ports.control}`;

test.before(async () => {
  const bundle = await ensureBundle();
  fake = await startFakeProvider();
  db = await createTestDatabase();
  const env = { CYNODE_BUNDLE: bundle, DATABASE_URL: db.url, CYNODE_OPENAI_BASE_URL: fake.url, CYNODE_MASTER_KEY: MASTER };
  a = await startGatewayProcess(env);
  b = await startGatewayProcess(env);
});
test.after.always(async () => {
  for (const g of [a, b]) g?.child.kill('SIGTERM');
  await Promise.all([a?.exited, b?.exited]);
  await fake?.close();
  await db?.drop();
});

test.serial('a worker rate limit holds across two gateway processes on one database', async (t) => {
  const admin = url(a);
  t.is((await call(admin, '/v1/credentials', { json: { provider: 'openai', name: 'main', secret: KEY } })).status, 201);
  await call(admin, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  t.is((await call(admin, '/v1/budgets/task/task-rep', { method: 'PUT', json: { limit_usd: 10 } })).status, 200);
  const psk = (await createPsk(admin)).secret;
  const worker = await registerWorker(url(b), psk, { node_id: 'cloud-rl-01', rate_limits: { rpm: 4 } });
  const job = await submitJob(admin, {
    task_id: 'task-rep',
    user_id: 'user-rep',
    requirements: { labels: ['cloud'] },
    payload: { kind: 'api.call' },
  });
  const jobId = String(job.body.id);
  await eventually(async () => (await poll(url(b), worker)).body.jobs.some((j) => j.job_id === jobId), 10_000);

  // Counters use fixed one-minute windows: start well inside one.
  const intoWindow = Date.now() % RATE_WINDOW_MS;
  if (intoWindow > RATE_WINDOW_MS - 15_000) await new Promise((r) => setTimeout(r, RATE_WINDOW_MS - intoWindow + 100));
  const body = {
    provider: 'openai',
    operation: 'chat.completions',
    task_id: 'task-rep',
    job_id: jobId,
    params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 },
  };
  const statuses: number[] = [];
  let limited: Awaited<ReturnType<typeof call<Record<string, any>>>> | undefined;
  for (let i = 0; i < 6; i++) {
    const res = await call<Record<string, any>>(url(i % 2 === 0 ? a : b), '/v1/api/call', { token: worker.token, json: body });
    statuses.push(res.status);
    if (res.status === 429) limited ??= res;
  }
  t.deepEqual(statuses, [200, 200, 200, 200, 429, 429], 'four calls in all across both replicas, then 429');
  t.is(limited!.body.error.code, 'rate_limited');
  t.deepEqual(limited!.body.error.reasons, ['rate_limited']);
  const retryAfter = Number(limited!.headers.get('retry-after'));
  t.true(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
  t.is(fake.received.length, 4, 'the provider saw only the admitted calls');
  await eventually(async () => (await call<{ reserved_usd: number }>(url(b), '/v1/budgets/task/task-rep')).body.reserved_usd === 0);
  const budget = (await call<{ spent_usd: number; reserved_usd: number; limit_usd: number }>(url(b), '/v1/budgets/task/task-rep')).body;
  const costs = fake.received.length;
  t.true(budget.spent_usd > 0 && budget.reserved_usd === 0, `spent ${budget.spent_usd} over ${costs} calls, nothing left reserved`);
});

test.serial('a control plane forwards over HTTP to an egress role running as its own process', async (t) => {
  const bundle = await ensureBundle();
  const env = { CYNODE_BUNDLE: bundle, DATABASE_URL: db.url, CYNODE_OPENAI_BASE_URL: fake.url, CYNODE_MASTER_KEY: MASTER };
  const egress = await startGatewayProcess(env, ['--role', 'egress']);
  const control = await startGatewayProcess({ ...env, CYNODE_EGRESS_URL: `http://127.0.0.1:${egress.ports.egress}` }, [
    '--role',
    'control',
  ]);
  try {
    const base = `http://127.0.0.1:${control.ports.control}`;
    t.is((await call(base, '/v1/budgets/task/task-split', { method: 'PUT', json: { limit_usd: 1 } })).status, 200);
    await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
    const res = await call<Record<string, any>>(base, '/v1/api/call', {
      json: {
        provider: 'openai',
        operation: 'chat.completions',
        task_id: 'task-split',
        params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 },
      },
    });
    t.is(res.status, 200, JSON.stringify(res.body));
    t.is(fake.received.at(-1)!.headers.authorization, `Bearer ${KEY}`, 'the egress process injected the key');
    // The egress port takes only forwarded calls.
    const direct = await call<Record<string, any>>(`http://127.0.0.1:${egress.ports.egress}`, '/v1/egress/call', {
      json: { request_id: res.body.request_id },
    });
    t.is(direct.status, 401);
    t.is(direct.body.error.code, 'forward_token_invalid');
    await eventually(
      async () =>
        (await call<{ records: { gate: string }[] }>(base, '/v1/audit?task_id=task-split')).body.records.some((r) => r.gate === 'egress'),
      5000,
    );
  } finally {
    for (const g of [control, egress]) g.child.kill('SIGTERM');
    await Promise.all([control.exited, egress.exited]);
  }
});
