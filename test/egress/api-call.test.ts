import { randomBytes, randomUUID } from 'node:crypto';
import test from 'ava';
import { costOf, priceTableFrom } from '../../src/egress/pricing.js';
import { FORWARD_TOKEN_HEADER, signForwardToken } from '../../src/final-gate/forward-token.js';
import { ENTRYPOINTS } from '../../src/policy/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { type Answer, call, eventually } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

const OPENAI_KEY = `sk-openai-${randomBytes(20).toString('hex')}`;
const ANTHROPIC_KEY = `sk-ant-${randomBytes(20).toString('hex')}`;

let gw: BootedGateway;
let base: string;
let fake: FakeProvider;
let psk: string;
let openaiCredential: string;
const logs = captureLogger();
const answers: string[] = [];

/** `POST /v1/api/call`, its answer kept for the secrets scan. */
async function apiCall(body: Record<string, unknown>, token: string = TEST_ADMIN_TOKEN): Promise<Answer<Record<string, any>>> {
  const res = await call<Record<string, any>>(base, '/v1/api/call', { token, json: body });
  answers.push(JSON.stringify(res.body));
  return res;
}
const chat = (task: string, extra: Record<string, unknown> = {}, params: Record<string, unknown> = {}) => ({
  provider: 'openai',
  operation: 'chat.completions',
  task_id: task,
  params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 16, ...params },
  ...extra,
});
const budget = (task: string, limit: number) => call(base, `/v1/budgets/task/${task}`, { method: 'PUT', json: { limit_usd: limit } });
const auditOf = async (requestId: string) => {
  await gw.gateway.audit.flush();
  return auditRows(requestId);
};
const auditRows = async (requestId: string) =>
  (await call<{ records: Record<string, any>[] }>(base, `/v1/audit?request_id=${requestId}`)).body.records;

test.before(async () => {
  fake = await startFakeProvider();
  gw = await bootGateway({
    env: {
      CYNODE_OPENAI_BASE_URL: fake.url,
      CYNODE_ANTHROPIC_BASE_URL: fake.url,
      CYNODE_EGRESS_IDLE_TIMEOUT_MS: '400',
      CYNODE_EGRESS_CONNECT_TIMEOUT_MS: '1500',
    },
    roles: ['control', 'egress'],
    logger: logs.logger,
  });
  base = gw.url('control');
  const created = await call<{ id: string }>(base, '/v1/credentials', { json: { provider: 'openai', name: 'main', secret: OPENAI_KEY } });
  openaiCredential = created.body.id;
  await call(base, '/v1/credentials', { json: { provider: 'anthropic', name: 'main', secret: ANTHROPIC_KEY } });
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  psk = (await createPsk(base)).secret;
});
test.after.always(async () => {
  await gw?.stop();
  await fake?.close();
});

test.serial('direct routing: the gateway injects the key, the provider answers, usage is priced and audited', async (t) => {
  await budget('task-direct', 1);
  const res = await apiCall(chat('task-direct'));
  t.is(res.status, 200, JSON.stringify(res.body));
  const sent = fake.received.at(-1)!;
  t.is(sent.headers.authorization, `Bearer ${OPENAI_KEY}`, 'the provider sees the stored key');
  t.is(res.body.status, 'ok');
  t.is(res.body.error, null);
  t.is(res.body.result.choices[0].message.content, 'Hello from the fake provider');
  t.is(res.body.model, 'gpt-4o-mini-2026-01-01');
  const table = priceTableFrom(gw.gateway.policy.bundleData()!.data);
  t.is(res.body.cost_usd, costOf(res.body.usage, table.models['gpt-4o-mini']!));
  t.is(res.body.price_version, table.version);
  t.true(res.body.cost_usd > 0);

  const [row, ...rest] = await auditOf(res.body.request_id);
  t.is(rest.length, 0, 'one audit row for an allowed call');
  t.like(row, {
    gate: 'egress',
    outcome: 'ok',
    subject_kind: 'orchestrator',
    task_id: 'task-direct',
    provider: 'openai',
    operation: 'chat.completions',
  });
  t.is(row!.model_requested, 'gpt-4o-mini');
  t.is(row!.model_served, 'gpt-4o-mini-2026-01-01');
  t.is(row!.cost_usd, res.body.cost_usd);
  t.is(row!.price_version, table.version);
  t.is(row!.credential_id, openaiCredential);
  t.deepEqual(row!.tokens, res.body.usage);
  t.truthy(row!.decision_id);
  t.is(row!.revision, gw.gateway.policy.status().active!.revision);
  t.true(row!.latency_ms >= row!.ttft_ms && row!.ttft_ms > 0);

  await gw.gateway.egress.settled();
  const spent = (await call<{ spent_usd: number; reserved_usd: number; limit_usd: number }>(base, '/v1/budgets/task/task-direct')).body;
  t.is(spent.spent_usd, res.body.cost_usd, 'the task budget is charged the real cost');
  t.is(spent.reserved_usd, 0, 'and nothing stays reserved');
});

test.serial('streaming and other operations: OpenAI streams with usage forced, embeddings, Anthropic with cache tokens', async (t) => {
  await budget('task-ops', 5);
  const streamed = await apiCall(chat('task-ops', {}, { stream: true, messages: [{ role: 'user', content: 'cached context' }] }));
  t.is(streamed.status, 200, JSON.stringify(streamed.body));
  t.deepEqual(fake.received.at(-1)!.body.stream_options, { include_usage: true });
  t.is(streamed.body.result.choices[0].message.content, 'Hello from the fake provider');
  t.true(streamed.body.usage.cached_input_tokens > 0);

  const embedded = await apiCall({
    provider: 'openai',
    operation: 'embeddings',
    task_id: 'task-ops',
    params: { model: 'text-embedding-3-small', input: 'hello' },
  });
  t.is(embedded.status, 200, JSON.stringify(embedded.body));
  t.is(embedded.body.usage.output_tokens, 0);

  const claude = await apiCall({
    provider: 'anthropic',
    operation: 'messages',
    task_id: 'task-ops',
    params: {
      model: 'claude-3-5-haiku-latest',
      max_tokens: 32,
      stream: true,
      system: [{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: 'hi' }],
    },
  });
  t.is(claude.status, 200, JSON.stringify(claude.body));
  t.is(fake.received.at(-1)!.headers['x-api-key'], ANTHROPIC_KEY);
  t.is(claude.body.usage.cached_input_tokens, 100);
  t.is(claude.body.usage.cache_write_tokens, 20);
  const table = priceTableFrom(gw.gateway.policy.bundleData()!.data);
  t.is(claude.body.cost_usd, costOf(claude.body.usage, table.models['claude-3-5-haiku-latest']!));
  const row = (await auditOf(claude.body.request_id))[0]!;
  t.is(row.tokens.cache_write_tokens, 20);
  t.true(row.stream);
});

test.serial('a worker calls only for a job it leases; task, user and region come from the gateway', async (t) => {
  const worker = await registerWorker(base, psk, { node_id: 'cloud-egress-a', max_concurrency: 2 });
  const other = await registerWorker(base, psk, { node_id: 'cloud-egress-b' });
  const submitted = await submitJob(base, {
    task_id: 'task-w',
    user_id: 'user-w',
    budget_usd: 2,
    requirements: { labels: ['cloud'] },
    payload: { kind: 'api.call' },
  });
  t.is(submitted.status, 201, JSON.stringify(submitted.body));
  const jobId = String(submitted.body.id ?? submitted.body.job_id);
  const leased = await leaseJob(worker, jobId);
  t.truthy(leased, 'the worker leased the job');

  const ok = await apiCall(chat('task-w', { job_id: jobId }), worker.token);
  t.is(ok.status, 200, JSON.stringify(ok.body));
  const row = (await auditOf(ok.body.request_id))[0]!;
  t.like(row, { subject_kind: 'worker', subject_id: 'cloud-egress-a', task_id: 'task-w', job_id: jobId, user_id: 'user-w' });
  const taskBudget = (await call<{ spent_usd: number; reserved_usd: number; limit_usd: number }>(base, '/v1/budgets/task/task-w')).body;
  t.is(taskBudget.limit_usd, 2, "the job's budget became its task's");

  const noJob = await apiCall(chat('task-w'), worker.token);
  t.is(noJob.status, 403);
  t.is(noJob.body.error.code, 'job_not_leased');
  const notMine = await apiCall(chat('task-w', { job_id: jobId }), other.token);
  t.is(notMine.status, 403);
  t.deepEqual(notMine.body.error.reasons, ['job_not_leased']);
  const otherTask = await apiCall(chat('task-other', { job_id: jobId }), worker.token);
  t.is(otherTask.body.error.code, 'job_not_leased', 'the task comes from the job, not the request');
  const claimed = await apiCall({ ...chat('task-w', { job_id: jobId }), user_id: 'someone-else' }, worker.token);
  t.is(claimed.status, 400, 'a caller cannot name its user, budget or region');
  const denied = await auditOf(notMine.body.request_id);
  t.like(denied[0], { gate: 'gateway', outcome: 'denied', error_code: 'job_not_leased', subject_id: 'cloud-egress-b' });
});

test.serial('a call for a job whose lease just ended is refused, although its context was read a moment before', async (t) => {
  const worker = await registerWorker(base, psk, { node_id: 'cloud-egress-end' });
  const jobId = String(
    (await submitJob(base, { task_id: 'task-end', user_id: 'user-end', budget_usd: 1, requirements: { labels: ['cloud'] } })).body.id,
  );
  let leaseId = '';
  await eventually(async () => {
    leaseId = (await poll(base, worker)).body.jobs.find((j) => j.job_id === jobId)?.lease_id ?? '';
    return leaseId !== '';
  }, 10_000);
  for (let i = 0; i < 3; i++) t.is((await apiCall(chat('task-end', { job_id: jobId }), worker.token)).status, 200);
  const res = await call(base, '/result', {
    token: worker.token,
    json: { job_id: jobId, lease_id: leaseId, status: 'succeeded', result: {} },
  });
  t.is(res.status, 200);
  const ended = Date.now();
  await eventually(
    async () => (await apiCall(chat('task-end', { job_id: jobId }), worker.token)).body.error?.code === 'job_not_leased',
    5000,
    5,
  );
  const took = Date.now() - ended;
  t.log(`refused ${took} ms after the result`);
  t.true(took < 250, `refused after ${took} ms (contexts are reused for at most 250 ms)`);
});

async function leaseJob(worker: TestWorker, jobId: string): Promise<boolean> {
  let found = false;
  await eventually(async () => {
    const res = await poll(base, worker, { max_jobs: 2 });
    found ||= res.body.jobs.some((j) => j.job_id === jobId);
    return found;
  }, 10_000);
  return found;
}

test.serial('deny paths carry their reason codes', async (t) => {
  await budget('task-deny', 1);
  const reasons = async (body: Record<string, unknown>, token?: string) => {
    const res = await apiCall(body, token);
    t.not(res.status, 200, JSON.stringify(res.body));
    return { status: res.status, code: res.body.error?.code as string, reasons: (res.body.error?.reasons ?? []) as string[] };
  };
  const before = fake.received.length;
  const model = await reasons(chat('task-deny', {}, { model: 'gpt-3.5-turbo' }));
  t.is(model.status, 403);
  t.true(model.reasons.includes('model_not_allowed'), model.reasons.join());

  // Example 1: a worker labelled provider_openai may not call Anthropic.
  const worker = await registerWorker(base, psk, { node_id: 'cloud-egress-deny' });
  const job = await submitJob(base, {
    task_id: 'task-deny',
    user_id: 'user-d',
    requirements: { labels: ['cloud'] },
    payload: { kind: 'api.call' },
  });
  const jobId = String(job.body.id ?? job.body.job_id);
  t.true(await leaseJob(worker, jobId));
  const provider = await reasons(
    {
      provider: 'anthropic',
      operation: 'messages',
      task_id: 'task-deny',
      job_id: jobId,
      params: { model: 'claude-3-5-haiku-latest', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] },
    },
    worker.token,
  );
  t.true(provider.reasons.includes('provider_not_allowed'), provider.reasons.join());

  const region = await call(base, '/v1/preferences/user/user-d/regions', { method: 'PUT', json: { value: ['eu-west-1'] } });
  t.is(region.status, 200);
  await eventually(
    async () =>
      (await apiCall(chat('task-deny', { job_id: jobId }), worker.token)).body.error?.reasons?.includes('region_not_allowed') === true,
  );
  await call(base, '/v1/preferences/user/user-d/regions', { method: 'DELETE' });

  await budget('task-poor', 0.000001);
  const poor = await reasons(chat('task-poor'));
  t.is(poor.status, 402);
  t.is(poor.code, 'budget_exceeded');
  t.true(poor.reasons.includes('budget_exceeded'));
  const missing = await reasons(chat('task-without-budget'));
  t.is(missing.code, 'budget_missing');

  const kill = await call(base, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: false } });
  t.is(kill.status, 200);
  const killed = await reasons(chat('task-deny'));
  t.true(killed.reasons.includes('cloud_routing_disabled'), killed.reasons.join());
  await call(base, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: true } });
  t.is(fake.received.length, before, 'no denied call reached the provider');

  t.is((await apiCall(chat('task-deny'))).status, 200, 'allowed again once the switch is back');
});

test.serial('a disabled or expired credential refuses the call before the provider is reached', async (t) => {
  await budget('task-cred', 1);
  const made = await call<{ id: string }>(base, '/v1/credentials', {
    json: {
      provider: 'openai',
      name: 'short-lived',
      secret: `sk-short-${randomBytes(8).toString('hex')}`,
      owner_user: 'user-exp',
      expires_at: new Date(Date.now() + 1500).toISOString(),
    },
  });
  t.is(made.status, 201);
  t.is((await call(base, `/v1/credentials/${openaiCredential}/disable`, { method: 'POST' })).status, 200);
  const before = fake.received.length;
  const disabled = await apiCall(chat('task-cred'));
  t.is(disabled.status, 403);
  t.is(disabled.body.error.code, 'credential_disabled');
  await submitJob(base, { task_id: 'task-cred', user_id: 'user-exp', payload: { kind: 'api.call' } });
  await new Promise((r) => setTimeout(r, 1600));
  const expired = await apiCall(chat('task-cred'));
  t.is(expired.status, 403);
  t.is(expired.body.error.code, 'credential_expired', JSON.stringify(expired.body));
  t.is(fake.received.length, before);
  const row = (await auditOf(expired.body.request_id))[0]!;
  t.like(row, { gate: 'egress', outcome: 'denied', error_code: 'credential_expired' });
  // Back to a usable key for the rest of the file.
  const fresh = await call<{ id: string }>(base, '/v1/credentials', { json: { provider: 'openai', name: 'second', secret: OPENAI_KEY } });
  openaiCredential = fresh.body.id;
  t.is((await apiCall(chat('task-cred'))).status, 200);
});

test.serial('provider failures map to stable codes; retries honour Retry-After; a timeout releases the reservation', async (t) => {
  await budget('task-fail', 1);
  fake.next({ status: 429, retryAfter: '0' }, { status: 503 });
  const retried = await apiCall(chat('task-fail'));
  t.is(retried.status, 200, `two retryable failures, then an answer: ${JSON.stringify(retried.body)}`);
  fake.next({ status: 500 });
  const sentBefore = fake.received.length;
  const failed = await apiCall(chat('task-fail'));
  t.is(fake.received.length, sentBefore + 1, 'a 500 is not retried: the provider may have done the work');
  t.is(failed.status, 502);
  t.is(failed.body.error.code, 'provider_error');
  fake.next({ status: 401 });
  t.is((await apiCall(chat('task-fail'))).body.error.code, 'provider_auth_failed');
  fake.next({ status: 429, retryAfter: '120' });
  const limited = await apiCall(chat('task-fail'));
  t.is(limited.status, 429);
  t.is(limited.headers.get('retry-after'), '120', 'a Retry-After too long to wait out is passed on');
  t.is(limited.body.error.code, 'provider_rate_limited');
  fake.next('stall');
  const stalled = await apiCall(chat('task-fail', {}, { stream: true }));
  t.is(stalled.status, 504);
  t.is(stalled.body.error.code, 'provider_timeout');
  fake.next('drop');
  const dropped = await apiCall(chat('task-fail', {}, { stream: true }));
  t.is(dropped.body.error.code, 'provider_stream_interrupted');
  fake.next('echo-key');
  const echoed = await apiCall(chat('task-fail'));
  t.is(echoed.status, 422);
  t.false(JSON.stringify(echoed.body).includes(OPENAI_KEY), 'an echoed key is redacted');
  t.true(echoed.body.error.message.includes('[REDACTED]'));
  await gw.gateway.egress.settled();
  const after = (await call<{ spent_usd: number; reserved_usd: number; limit_usd: number }>(base, '/v1/budgets/task/task-fail')).body;
  t.is(after.reserved_usd, 0, 'failed calls hold nothing');
  t.is(after.spent_usd, retried.body.cost_usd, 'and cost nothing');
});

test.serial('200 concurrent calls never spend past the task budget, and spend reconciles with the provider', async (t) => {
  const table = priceTableFrom(gw.gateway.policy.bundleData()!.data);
  const price = table.models['gpt-4o-mini']!;
  // Each call reserves its worst case (~$9.6e-6 with 16 output tokens) and costs far less:
  // a budget for about 60 worst cases lets more than 60 calls through, never more than it holds.
  const limit = 0.0006;
  await budget('task-race', limit);
  const first = fake.received.length;
  const results = await Promise.all(Array.from({ length: 200 }, () => apiCall(chat('task-race'))));
  const ok = results.filter((r) => r.status === 200);
  const refused = results.filter((r) => r.status !== 200);
  t.true(ok.length > 0 && refused.length > 0, `${ok.length} allowed, ${refused.length} refused: ${JSON.stringify(refused[0]?.body)}`);
  t.true(
    refused.every((r) => r.body.error.code === 'budget_exceeded'),
    [...new Set(refused.map((r) => r.body.error.code))].join(),
  );
  await gw.gateway.egress.settled();
  const b = (await call<{ spent_usd: number; reserved_usd: number; limit_usd: number }>(base, '/v1/budgets/task/task-race')).body;
  const overspend = Math.max(0, b.spent_usd - limit);
  t.is(overspend, 0, 'zero overspend');
  t.log(
    `${ok.length} of 200 allowed, ${refused.length} refused (budget_exceeded); spent $${b.spent_usd} of $${limit}; overspend $${overspend}`,
  );
  t.is(b.reserved_usd, 0);
  const answered = ok.reduce((s, r) => s + Math.round(r.body.cost_usd * 1e6), 0);
  t.is(Math.round(b.spent_usd * 1e6), answered, 'the budget holds exactly the settled costs');
  // Reconciliation: what the provider reported, priced independently, is what was charged.
  const reported = fake.received
    .slice(first)
    .map((r) => r.usage as { prompt_tokens: number; completion_tokens: number; prompt_tokens_details: { cached_tokens: number } });
  t.is(reported.length, ok.length, 'only admitted calls reached the provider');
  const billed = reported.reduce(
    (s, u) =>
      s +
      Math.round(
        costOf(
          {
            input_tokens: u.prompt_tokens - u.prompt_tokens_details.cached_tokens,
            cached_input_tokens: u.prompt_tokens_details.cached_tokens,
            cache_write_tokens: 0,
            output_tokens: u.completion_tokens,
          },
          price,
        ) * 1e6,
      ),
    0,
  );
  t.is(billed, answered);
  await gw.gateway.audit.flush();
  const audited = (await call<{ records: { cost_usd: number; outcome: string }[] }>(base, '/v1/audit?task_id=task-race&limit=1000')).body
    .records;
  t.is(audited.filter((r) => r.outcome === 'ok').length, ok.length);
  t.is(Math.round(audited.reduce((s, r) => s + (r.cost_usd ?? 0), 0) * 1e6), answered, 'and the audit trail says the same');
});

test.serial(
  'the egress role is a final gate: no, forged, replayed or mismatched forward tokens are refused, and its own policy decides',
  async (t) => {
    const egress = gw.url('egress');
    const send = (body: string, token?: string) =>
      call<Record<string, any>>(egress, '/v1/egress/call', {
        token: null,
        body,
        headers: { 'content-type': 'application/json', ...(token && { [FORWARD_TOKEN_HEADER]: token }) },
      });
    const body = JSON.stringify({
      request_id: randomUUID(),
      provider: 'openai',
      operation: 'chat.completions',
      params: chat('task-direct').params,
    });
    const input = (over: Record<string, unknown> = {}) => ({
      action: 'api.call',
      subject: { kind: 'orchestrator', id: 'admin', labels: [] },
      resource: { provider: 'openai', operation: 'chat.completions', model: 'gpt-4o-mini', stream: false, estimated_cost_usd: 0.00001 },
      context: {
        task_id: 'task-direct',
        job_id: null,
        user_id: null,
        project_id: null,
        group_id: null,
        region: 'local',
        preferences: { cloud_allowed: true },
        requirements: {},
        budget: { task: null, user: null, subject: null },
        ...over,
      },
    });
    const sign = (i: unknown, b: string) =>
      signForwardToken(
        gw.gateway.keys.current(),
        {
          issuer: 'cynode-gateway',
          audience: 'cynode-egress',
          subject: 'orchestrator:admin',
          entrypoint: ENTRYPOINTS.apiCall,
          input: i,
          revision: 'x',
        },
        b,
        10_000,
      );

    const funded = { task: { limit_usd: 1, spent_usd: 0, reserved_usd: 0, remaining_usd: 1 }, user: null, subject: null };
    t.is((await send(body)).body.error.code, 'forward_token_invalid');
    t.is((await send(body, 'not-a-jwt')).body.error.code, 'forward_token_invalid');
    const token = await sign(input({ budget: funded }), body);
    t.is((await send(body.replace('Say hello', 'Say goodbye'), token)).body.error.code, 'forward_body_mismatch');
    // The gateway's decision is not trusted: this input is denied by the egress role's own bundle.
    const denied = await send(body, await sign(input({ preferences: { cloud_allowed: false }, budget: funded }), body));
    t.is(denied.status, 403);
    t.true(denied.body.error.reasons.includes('cloud_not_allowed_by_preferences'));
    const first = await send(body, token);
    t.is(first.status, 200, JSON.stringify(first.body));
    const again = await send(body, token);
    t.is(again.status, 401);
    t.is(again.body.error.code, 'forward_token_replayed');
  },
);

test.serial('a burst on one task is admitted from prepaid blocks, and its spend is exactly what its calls cost', async (t) => {
  await budget('task-blocks', 10);
  const results = await Promise.all(Array.from({ length: 60 }, () => apiCall(chat('task-blocks'))));
  t.deepEqual([...new Set(results.map((r) => r.status))], [200]);
  const rows = (await gw.gateway.db.knex.raw(`SELECT count(*)::int AS n FROM budget_reservations WHERE holds @> ?::jsonb`, [
    JSON.stringify([{ scope: 'task', subject_id: 'task-blocks' }]),
  ])) as { rows: { n: number }[] };
  t.true(rows.rows[0]!.n < 60, `${rows.rows[0]!.n} reservations for 60 calls`);
  await gw.gateway.egress.settled();
  const b = (await call<{ spent_usd: number; reserved_usd: number }>(base, '/v1/budgets/task/task-blocks')).body;
  t.is(b.reserved_usd, 0, 'every block is settled');
  t.is(
    Math.round(b.spent_usd * 1e6),
    results.reduce((s, r) => s + Math.round(r.body.cost_usd * 1e6), 0),
  );
});

test.serial('egress metrics: calls by provider and outcome, provider latency, spend', async (t) => {
  const text = await (await fetch(`${gw.url('egress')}/metrics`)).text();
  t.regex(text, /cynode_egress_calls_total\{provider="openai",operation="chat.completions",outcome="ok",code=""\} [1-9]/);
  t.regex(
    text,
    /cynode_egress_calls_total\{provider="openai",operation="chat.completions",outcome="error",code="provider_timeout"\} [1-9]/,
  );
  t.regex(text, /cynode_egress_provider_seconds_count\{provider="anthropic",operation="messages"\} [1-9]/);
  const spend = /cynode_egress_spend_usd_total\{provider="openai"\} ([\d.e-]+)/.exec(text);
  t.true(Number(spend?.[1]) > 0);
});

test.serial('nothing secret in answers, logs, audit rows or decision logs', async (t) => {
  await gw.gateway.audit.flush();
  await gw.gateway.decisionLog.flush();
  const audit = JSON.stringify((await gw.gateway.db.knex('api_audit').select()) as unknown[]);
  const decisions = JSON.stringify((await gw.gateway.db.knex('decision_log').select('input', 'result')) as unknown[]);
  const haystacks = { answers: answers.join('\n'), logs: logs.lines.join('\n'), audit, decisions };
  for (const [where, text] of Object.entries(haystacks)) {
    t.true(text.length > 0, `${where} were captured`);
    for (const secret of [OPENAI_KEY, ANTHROPIC_KEY, TEST_ADMIN_TOKEN])
      t.false(text.includes(secret), `no credential or admin token in ${where}`);
    t.false(/eyJ[\w-]{10,}\.eyJ[\w-]{10,}\./.test(text), `no JWT in ${where}`);
  }
  const verified = await gw.gateway.audit.verify();
  t.true(verified.rows > 0);
  t.is(verified.break, undefined, 'the audit hash chain verifies');
});
