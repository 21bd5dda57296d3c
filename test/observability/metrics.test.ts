import { randomBytes, randomUUID } from 'node:crypto';
import test from 'ava';
import { ENTRYPOINTS } from '../../src/policy/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { call, eventually } from '../helpers/http.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

const OPENAI_KEY = `sk-openai-${randomBytes(20).toString('hex')}`;

let gw: BootedGateway;
let base: string;
let fake: FakeProvider;
let worker: TestWorker;

/** One scrape, parsed: every sample with its labels. */
interface Scrape {
  text: string;
  /** The sum of the samples of `name` whose labels include `labels` (0 when none). */
  value(name: string, labels?: Record<string, string>): number;
  /** Whether any sample of `name` has exactly these labels. */
  has(name: string, labels: Record<string, string>): boolean;
}

async function scrape(role: 'control' | 'mcp' | 'egress' = 'control'): Promise<Scrape> {
  const res = await fetch(`${gw.url(role)}/metrics`);
  if (res.status !== 200 || !(res.headers.get('content-type') ?? '').startsWith('text/plain'))
    throw new Error(`/metrics answered ${res.status}`);
  const text = await res.text();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  const matches = (s: (typeof samples)[number], labels: Record<string, string>) =>
    Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  return {
    text,
    value: (name, labels = {}) => samples.filter((s) => s.name === name && matches(s, labels)).reduce((sum, s) => sum + s.value, 0),
    has: (name, labels) =>
      samples.some((s) => s.name === name && matches(s, labels) && Object.keys(s.labels).length === Object.keys(labels).length),
  };
}

const chat = (task: string, model = 'gpt-4o-mini') => ({
  provider: 'openai',
  operation: 'chat.completions',
  task_id: task,
  params: { model, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 16 },
});

test.before(async () => {
  fake = await startFakeProvider();
  gw = await bootGateway({
    env: {
      CYNODE_OPENAI_BASE_URL: fake.url,
      CYNODE_ANTHROPIC_BASE_URL: fake.url,
      CYNODE_EGRESS_MAX_RETRIES: '0',
      CYNODE_JOB_LEASE_TTL_MS: '600',
      CYNODE_WORKER_HEARTBEAT_INTERVAL_MS: '200',
      CYNODE_WORKER_POLL_INTERVAL_MS: '200',
      CYNODE_JOB_REAPER_INTERVAL_MS: '50',
    },
  });
  base = gw.url('control');
  const credential = await call(base, '/v1/credentials', { json: { provider: 'openai', name: 'main', secret: OPENAI_KEY } });
  if (credential.status !== 201) throw new Error(`credential: ${credential.status}`);
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  worker = await registerWorker(base, (await createPsk(base)).secret, { node_id: 'cloud-metrics-1' });
});
test.after.always(async () => {
  await gw?.stop();
  await fake?.close();
});

test.serial('the active bundle: revision and digest, and an age computed at scrape time', async (t) => {
  const active = gw.gateway.policy.status().active!;
  const before = Date.now() / 1000;
  const s = await scrape();
  const after = Date.now() / 1000;
  t.true(
    s.has('cynode_bundle_info', { bundle: 'cynode', revision: active.revision, digest: active.digest }),
    s.text
      .split('\n')
      .filter((l) => l.startsWith('cynode_bundle'))
      .join('\n'),
  );
  t.is(s.value('cynode_bundle_info', { bundle: 'cynode' }), 1, 'one active bundle');
  const activated = active.activatedAt.getTime() / 1000;
  t.is(s.value('cynode_bundle_activated_timestamp_seconds', { bundle: 'cynode' }), activated);
  const age = s.value('cynode_bundle_age_seconds', { bundle: 'cynode' });
  t.true(
    age >= before - activated - 0.001 && age <= after - activated + 0.001,
    `age ${age} not between ${before - activated} and ${after - activated}`,
  );
  t.true(s.has('cynode_bundle_loads_total', { bundle: 'cynode', outcome: 'activated', code: '' }));
  t.true(s.value('cynode_bundle_loads_total', { outcome: 'activated' }) >= 1);
});

test.serial('queue depth by state (queued included, empty states read 0), leases, lease expiries and dispatch decisions', async (t) => {
  const s0 = await scrape();
  for (const state of ['queued', 'leased', 'succeeded', 'failed', 'cancelled', 'dead_lettered'])
    t.true(s0.has('cynode_jobs', { state }), `cynode_jobs{state="${state}"} is exported`);
  t.is(s0.value('cynode_jobs', { state: 'queued' }), 0);
  t.is(s0.value('cynode_jobs', { state: 'leased' }), 0);
  for (let i = 0; i < 2; i++)
    t.is((await submitJob(base, { task_id: 'task-m', user_id: 'user-m', requirements: { labels: ['cloud'] } })).status, 201);
  const s1 = await scrape();
  t.is(s1.value('cynode_jobs', { state: 'queued' }), 2);

  const leased = await poll(base, worker, { max_jobs: 1 });
  t.is(leased.body.jobs.length, 1, JSON.stringify(leased.body));
  const s2 = await scrape();
  t.is(s2.value('cynode_jobs', { state: 'queued' }), 1);
  t.is(s2.value('cynode_jobs', { state: 'leased' }), 1);
  t.is(s2.value('cynode_jobs_leased_total') - s1.value('cynode_jobs_leased_total'), 1);
  const dispatch = { entrypoint: ENTRYPOINTS.dispatch, result: 'allow' };
  t.true(
    s2.value('cynode_decisions_total', dispatch) - s1.value('cynode_decisions_total', dispatch) >= 1,
    'the dispatch decision is counted',
  );
  t.true(
    s2.value('cynode_policy_eval_seconds_count', { entrypoint: ENTRYPOINTS.dispatch }) >
      s1.value('cynode_policy_eval_seconds_count', { entrypoint: ENTRYPOINTS.dispatch }),
  );
  t.true(s2.value('cynode_policy_eval_seconds_sum', { entrypoint: ENTRYPOINTS.dispatch }) > 0);
  t.true(s2.has('cynode_policy_eval_seconds_bucket', { entrypoint: ENTRYPOINTS.dispatch, le: '+Inf' }));
  t.is(s2.value('cynode_decisions_total', { entrypoint: ENTRYPOINTS.register, result: 'allow' }), 1, 'the one registration');

  // The worker never heartbeats: the lease lapses and the reaper returns the job to the queue.
  let s3 = s2;
  await eventually(
    async () => {
      s3 = await scrape();
      return s3.value('cynode_lease_expiries_total') - s2.value('cynode_lease_expiries_total') === 1;
    },
    10_000,
    50,
  );
  t.is(s3.value('cynode_jobs', { state: 'leased' }), 0);
  t.is(s3.value('cynode_jobs', { state: 'queued' }), 2, 'the expired job is queued again');
});

test.serial(
  'api.call: egress calls, latency and spend by provider; first-gate calls by outcome; denials and provider errors',
  async (t) => {
    await call(base, '/v1/budgets/task/task-e', { method: 'PUT', json: { limit_usd: 5 } });
    const s0 = await scrape();
    const ok = await call<Record<string, any>>(base, '/v1/api/call', { json: chat('task-e') });
    t.is(ok.status, 200, JSON.stringify(ok.body));
    t.true(ok.body.cost_usd > 0);
    const s1 = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}, from = s0, to = s1) =>
      to.value(name, labels) - from.value(name, labels);
    t.is(delta('cynode_egress_calls_total', { provider: 'openai', operation: 'chat.completions', outcome: 'ok', code: '' }), 1);
    t.is(delta('cynode_egress_provider_seconds_count', { provider: 'openai', operation: 'chat.completions' }), 1);
    t.true(delta('cynode_egress_provider_seconds_sum', { provider: 'openai', operation: 'chat.completions' }) > 0);
    t.true(Math.abs(delta('cynode_egress_spend_usd_total', { provider: 'openai' }) - ok.body.cost_usd) < 1e-12, "spend is the call's cost");
    t.is(delta('cynode_api_calls_total', { caller: 'orchestrator', provider: 'openai', outcome: 'ok', code: '' }), 1);
    t.is(
      delta('cynode_decisions_total', { entrypoint: ENTRYPOINTS.apiCall, result: 'allow' }),
      2,
      'the first gate and the final gate both decided',
    );

    // Denied by policy at the first gate: counted as a deny, never reaches egress or the provider.
    const received = fake.received.length;
    const denied = await call<Record<string, any>>(base, '/v1/api/call', { json: chat('task-e', 'gpt-3.5-turbo') });
    t.is(denied.status, 403, JSON.stringify(denied.body));
    t.true((denied.body.error.reasons as string[]).includes('model_not_allowed'));
    const s2 = await scrape();
    t.is(delta('cynode_decisions_total', { entrypoint: ENTRYPOINTS.apiCall, result: 'deny' }, s1, s2), 1);
    t.is(
      delta(
        'cynode_api_calls_total',
        { caller: 'orchestrator', provider: 'openai', outcome: 'denied', code: denied.body.error.code },
        s1,
        s2,
      ),
      1,
    );
    t.is(delta('cynode_egress_calls_total', {}, s1, s2), 0, 'egress never saw it');
    t.is(fake.received.length, received);

    // The provider fails: an egress error by provider with its code, nothing spent.
    fake.next({ status: 500 });
    const failed = await call<Record<string, any>>(base, '/v1/api/call', { json: chat('task-e') });
    t.is(failed.body.status, 'error', JSON.stringify(failed.body));
    const s3 = await scrape();
    t.is(
      delta(
        'cynode_egress_calls_total',
        { provider: 'openai', operation: 'chat.completions', outcome: 'error', code: failed.body.error.code },
        s2,
        s3,
      ),
      1,
    );
    t.is(
      delta(
        'cynode_api_calls_total',
        { caller: 'orchestrator', provider: 'openai', outcome: 'error', code: failed.body.error.code },
        s2,
        s3,
      ),
      1,
    );
    t.is(delta('cynode_egress_spend_usd_total', { provider: 'openai' }, s2, s3), 0);

    // A made-up provider name never becomes a label.
    const bogus = await call<Record<string, any>>(base, '/v1/api/call', { json: { ...chat('task-e'), provider: 'evil-provider-xyz' } });
    t.is(bogus.status, 400);
    const s4 = await scrape();
    t.is(
      delta('cynode_api_calls_total', { caller: 'orchestrator', provider: 'unknown', outcome: 'error', code: 'bad_request' }, s3, s4),
      1,
    );
    t.false(s4.text.includes('evil-provider-xyz'));
  },
);

test.serial('MCP tool calls by tool and outcome; unknown tool names stay out of the labels; every role serves /metrics', async (t) => {
  const rpc = async (name: string, args: Record<string, unknown>) => {
    const res = await fetch(`${gw.url('mcp')}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${worker.token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }),
    });
    return (await res.json()) as { error?: { code: number; data?: { code?: string } }; result?: { isError?: boolean } };
  };
  const s0 = await scrape('mcp');
  const unknown = await rpc('shell.exec-secret-name', { cmd: 'id' });
  t.is(unknown.error?.data?.code, 'tool_unknown');
  // api.call for a job the worker holds no lease on: the policy denies it.
  const denied = await rpc('api.call', { ...chat('task-not-leased'), job_id: randomUUID() });
  t.is(denied.error?.data?.code, 'policy_denied', JSON.stringify(denied));
  const s1 = await scrape('mcp');
  t.is(
    s1.value('cynode_mcp_tool_calls_total', { tool: 'unknown', outcome: 'error' }) -
      s0.value('cynode_mcp_tool_calls_total', { tool: 'unknown', outcome: 'error' }),
    1,
  );
  t.is(
    s1.value('cynode_mcp_tool_calls_total', { tool: 'api.call', outcome: 'denied' }) -
      s0.value('cynode_mcp_tool_calls_total', { tool: 'api.call', outcome: 'denied' }),
    1,
  );
  t.false(s1.text.includes('shell.exec-secret-name'));

  const egress = await scrape('egress');
  t.true(egress.value('cynode_process_nodejs_heap_size_used_bytes') > 0, 'process metrics');
  t.false(egress.text.includes(OPENAI_KEY) || egress.text.includes(TEST_ADMIN_TOKEN), 'no secret in metrics');
});
