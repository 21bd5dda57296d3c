import { randomBytes } from 'node:crypto';
import Anthropic from '@anthropic-ai/sdk';
import test from 'ava';
import OpenAI from 'openai';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { buildPoliciesWith } from '../helpers/bundle.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { call, eventually } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

// The drop-in model APIs through the providers' own SDKs, in process (the egress role is
// handed each call by reference): every surface streamed and not, the key never leaving the
// gateway, and the refusals the SDKs raise natively.

const OPENAI_KEY = `sk-proj-${randomBytes(16).toString('hex')}`;
const ANTHROPIC_KEY = `sk-ant-${randomBytes(16).toString('hex')}`;
const logs = captureLogger();
let gw: BootedGateway;
let fake: FakeProvider;
let worker: TestWorker;

/** A job of its own task (with `budgetUsd`), leased by `w`, and an agent token for it. */
async function leasedJob(w: TestWorker, task: string, budgetUsd = 1): Promise<{ jobId: string; agentToken: string }> {
  const base = gw.url('control');
  await call(base, `/v1/budgets/task/${task}`, { method: 'PUT', json: { limit_usd: budgetUsd } });
  const jobId = String(
    (await submitJob(base, { task_id: task, user_id: 'user-sdk', requirements: { labels: ['cloud'] }, payload: { kind: 'agent' } })).body
      .id,
  );
  await eventually(async () => (await poll(base, w)).body.jobs.some((j) => j.job_id === jobId), 10_000);
  const issued = await call(base, '/v1/agent-tokens', { token: w.token, json: { agent_type: 'sandbox', job_id: jobId } });
  if (issued.status !== 201) throw new Error(`agent token refused: ${JSON.stringify(issued.body)}`);
  return { jobId, agentToken: String(issued.body.token) };
}

const openai = (apiKey: string, headers: Record<string, string> = {}) =>
  new OpenAI({ baseURL: `${gw.url('mcp')}/openai/v1`, apiKey, maxRetries: 0, defaultHeaders: headers });
const anthropic = (apiKey: string) => new Anthropic({ baseURL: `${gw.url('mcp')}/anthropic`, apiKey, maxRetries: 0 });

const failure = async (p: Promise<unknown>) =>
  (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as (InstanceType<typeof OpenAI.APIError> & InstanceType<typeof Anthropic.APIError>) | undefined;

/** A streamed chat call through the OpenAI SDK, read until it ends or raises: the text that arrived and the error. */
async function streamUntilError(key: string) {
  const stream = await openai(key).chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'x' }],
    stream: true,
  });
  let text = '';
  const err = await failure(
    (async () => {
      for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
    })(),
  );
  return { text, err };
}

let agent: { jobId: string; agentToken: string };

test.before(async () => {
  fake = await startFakeProvider();
  gw = await bootGateway({
    env: {
      CYNODE_OPENAI_BASE_URL: fake.url,
      CYNODE_ANTHROPIC_BASE_URL: fake.url,
      CYNODE_JOB_LEASE_TTL_MS: '600000',
      // The shipped grants give provider_openai workers chat and the Responses API; this node may embed too.
      CYNODE_BUNDLE: await buildPoliciesWith({
        'config/api_call/data.yaml': (y) =>
          y.replace('  nodes: {}', '  nodes: {cloud-sdk-01: {openai: {embeddings: {models: {"*": true}}}}}'),
      }),
    },
    roles: ['control', 'mcp', 'egress'],
    logger: logs.logger,
  });
  const base = gw.url('control');
  await call(base, '/v1/credentials', { json: { provider: 'openai', name: 'main', secret: OPENAI_KEY } });
  await call(base, '/v1/credentials', { json: { provider: 'anthropic', name: 'main', secret: ANTHROPIC_KEY } });
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  worker = await registerWorker(base, (await createPsk(base)).secret, {
    node_id: 'cloud-sdk-01',
    labels: ['cloud', 'provider_openai', 'provider_anthropic'],
    supported_providers: ['openai', 'anthropic'],
    supported_models: ['gpt-4o-mini', 'text-embedding-3-small', 'claude-3-5-haiku-latest'],
    max_concurrency: 8,
  });
  agent = await leasedJob(worker, 'task-sdk');
});
test.after.always(async () => {
  await gw?.stop();
  await fake?.close();
});

/** The fake saw the stored key, and nothing the SDK or the logs saw holds either key. */
function assertKeysStayed(t: import('ava').ExecutionContext, seen: unknown): void {
  const last = fake.received.at(-1)!;
  t.true(
    last.headers.authorization === `Bearer ${OPENAI_KEY}` || last.headers['x-api-key'] === ANTHROPIC_KEY,
    'the provider got the stored credential',
  );
  const text = JSON.stringify(seen) + logs.lines.join('\n');
  t.false(text.includes(OPENAI_KEY) || text.includes(ANTHROPIC_KEY), 'no key reached the SDK or the logs');
}

test.serial(
  'OpenAI chat completions through the SDK, plain and streamed with tool-call deltas; usage stays out of a stream that did not ask',
  async (t) => {
    const client = openai(agent.agentToken);
    const plain = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 16,
    });
    t.is(plain.choices[0]?.message.content, 'Hello from the fake provider');
    t.true((plain.usage?.prompt_tokens ?? 0) > 0);
    t.is(fake.received.at(-1)!.body.max_completion_tokens, 16, 'the output cap went upstream');
    assertKeysStayed(t, plain);

    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'weather?' }],
      stream: true,
      tools: [
        { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
      ],
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    t.is(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'Hello from the fake provider');
    const calls = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    t.is(calls[0]?.function?.name, 'get_weather');
    t.is(calls.map((c) => c.function?.arguments ?? '').join(''), '{"city":"Paris"}');
    t.is(chunks.at(-1)?.choices[0]?.finish_reason, 'tool_calls');
    t.true(
      chunks.every((c) => !('usage' in c)),
      'the usage report the gateway forced upstream is dropped, null fields included',
    );
    t.deepEqual(fake.received.at(-1)!.body.stream_options, { include_usage: true }, 'usage was forced upstream');

    const asked = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const withUsage = [];
    for await (const chunk of asked) withUsage.push(chunk);
    t.true((withUsage.at(-1)?.usage?.completion_tokens ?? 0) > 0, 'a caller that asked for usage gets it');
    assertKeysStayed(t, [chunks, withUsage]);
  },
);

test.serial('a relayed stream is the provider stream byte for byte', async (t) => {
  const request = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'bytes' }], stream: true, max_completion_tokens: 8 };
  const read = async (url: string, key: string) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(request),
    });
    t.is(res.status, 200);
    t.regex(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    return res.text();
  };
  const relayed = await read(`${gw.url('mcp')}/openai/v1/chat/completions`, agent.agentToken);
  const direct = await read(`${fake.url}/v1/chat/completions`, 'sk-direct');
  t.is(relayed, direct);
});

test.serial('the Responses API through the SDK, plain and streamed, with a function call in the stream', async (t) => {
  const client = openai(agent.agentToken);
  const tools = [{ type: 'function' as const, name: 'get_weather', parameters: { type: 'object', properties: {} }, strict: false }];
  const plain = await client.responses.create({ model: 'gpt-4o-mini', input: 'hi', max_output_tokens: 32 });
  t.is(plain.output_text, 'Hello from the fake provider');
  t.is(fake.received.at(-1)!.body.max_output_tokens, 32);
  const stream = await client.responses.create({ model: 'gpt-4o-mini', input: 'weather?', tools, stream: true });
  const types: string[] = [];
  let text = '';
  let args = '';
  for await (const e of stream) {
    types.push(e.type);
    if (e.type === 'response.output_text.delta') text += e.delta;
    if (e.type === 'response.function_call_arguments.delta') args += e.delta;
  }
  t.is(text, 'Hello from the fake provider');
  t.is(args, '{"city":"Paris"}');
  t.is(types.at(-1), 'response.completed');
  const refused = await failure(client.responses.create({ model: 'gpt-4o-mini', input: 'x', previous_response_id: 'resp_1' }));
  t.is(refused?.status, 400);
  t.is(refused?.code, 'bad_request', 'a stored conversation cannot be reserved for');
  assertKeysStayed(t, [plain, types]);
});

test.serial('embeddings and the model list through the OpenAI SDK: only what the policy lets this caller use is listed', async (t) => {
  const client = openai(agent.agentToken);
  const emb = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hello' });
  t.deepEqual(
    emb.data[0]?.embedding.map((x) => Math.round(x * 1000) / 1000),
    [0.1, 0.2, 0.3],
  );
  const listed = [];
  for await (const m of client.models.list()) listed.push(m.id);
  // gpt-4o is granted to provider_openai, but this worker reported it does not serve it.
  t.deepEqual(listed, ['gpt-4o-mini', 'text-embedding-3-small']);
  const anthropicListed = [];
  for await (const m of anthropic(agent.agentToken).models.list()) anthropicListed.push(m.id);
  t.deepEqual(anthropicListed, ['claude-3-5-haiku-latest']);
});

test.serial(
  'Anthropic messages through the SDK: plain, streamed with thinking and tool use, cache fields passed on, tokens counted',
  async (t) => {
    const client = anthropic(agent.agentToken);
    const system = [{ type: 'text' as const, text: 'You are terse.', cache_control: { type: 'ephemeral' as const } }];
    const plain = await client.messages.create({
      model: 'claude-3-5-haiku-latest',
      max_tokens: 64,
      system,
      messages: [{ role: 'user', content: 'hi' }],
    });
    t.is(plain.content[0]?.type === 'text' ? plain.content[0].text : '', 'Hello from the fake provider');
    t.deepEqual(fake.received.at(-1)!.body.system, system, 'prompt-cache fields pass through untouched');
    t.is(plain.usage.cache_read_input_tokens, 100);
    assertKeysStayed(t, plain);

    const stream = client.messages.stream({
      model: 'claude-3-5-haiku-latest',
      max_tokens: 2048,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      tools: [{ name: 'get_weather', input_schema: { type: 'object', properties: {} } }],
      messages: [{ role: 'user', content: 'weather?' }],
    });
    const final = await stream.finalMessage();
    t.deepEqual(
      final.content.map((b) => b.type),
      ['thinking', 'text', 'tool_use'],
    );
    const use = final.content.find((b) => b.type === 'tool_use');
    t.deepEqual(use?.type === 'tool_use' ? use.input : undefined, { city: 'Paris' });
    t.is(final.usage.output_tokens, 5, 'the last cumulative message_delta count');

    const counted = await client.messages.countTokens({
      model: 'claude-3-5-haiku-latest',
      messages: [{ role: 'user', content: 'count me' }],
    });
    t.true(counted.input_tokens > 0);
    t.is(fake.received.at(-1)!.path, '/v1/messages/count_tokens');
    assertKeysStayed(t, [final, counted]);
  },
);

test.serial('the worker JWT with X-Cynode-Job-Id is a key too; without the header, or for another job, it is refused', async (t) => {
  const ok = await openai(worker.token, { 'x-cynode-job-id': agent.jobId }).chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi' }],
  });
  t.truthy(ok.id);
  const bare = await failure(
    openai(worker.token).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
  );
  t.is(bare?.status, 403);
  t.is(bare?.code, 'job_not_leased');
  const other = await failure(
    openai(agent.agentToken, { 'x-cynode-job-id': '00000000-0000-4000-8000-000000000000' }).chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'x' }],
    }),
  );
  t.is(other?.status, 403);
  t.is(other?.code, 'policy_denied');
  const nobody = await failure(
    openai('not-a-token').chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
  );
  t.true(nobody instanceof OpenAI.AuthenticationError);
  t.is(nobody?.code, 'token_invalid');
  const anthropicNobody = await failure(
    anthropic('').messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
  );
  t.true(anthropicNobody instanceof Anthropic.AuthenticationError);
  t.is((anthropicNobody?.error as { error?: { type?: string } }).error?.type, 'unauthorized');
});

test.serial('denials through the SDKs raise their native errors with the gateway reason: model, budget, kill switch', async (t) => {
  const client = openai(agent.agentToken);
  const model = await failure(client.chat.completions.create({ model: 'gpt-9-unknown', messages: [{ role: 'user', content: 'x' }] }));
  t.true(model instanceof OpenAI.PermissionDeniedError);
  t.is(model?.code, 'policy_denied');
  t.true(((model?.error as { reasons?: string[] }).reasons ?? []).includes('model_not_allowed'));

  const poor = await leasedJob(worker, 'task-sdk-poor', 0.000001);
  const budget = await failure(
    openai(poor.agentToken).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
  );
  t.is(budget?.status, 402);
  t.is(budget?.code, 'budget_exceeded');
  const anthropicBudget = await failure(
    anthropic(poor.agentToken).messages.create({
      model: 'claude-3-5-haiku-latest',
      max_tokens: 8,
      messages: [{ role: 'user', content: 'x' }],
    }),
  );
  t.is(anthropicBudget?.status, 402);
  t.is((anthropicBudget?.error as { error?: { type?: string } }).error?.type, 'budget_exceeded');

  const base = gw.url('control');
  t.is((await call(base, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: false } })).status, 200);
  try {
    const killed = await failure(
      anthropic(agent.agentToken).messages.create({
        model: 'claude-3-5-haiku-latest',
        max_tokens: 8,
        messages: [{ role: 'user', content: 'x' }],
      }),
    );
    t.true(killed instanceof Anthropic.PermissionDeniedError);
    t.true(((killed?.error as { error?: { reasons?: string[] } }).error?.reasons ?? []).includes('cloud_routing_disabled'));
  } finally {
    await call(base, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: true } });
  }
});

test.serial('a rate-limited caller gets the SDK rate-limit error with Retry-After', async (t) => {
  const base = gw.url('control');
  const limited = await registerWorker(base, (await createPsk(base, 'rl')).secret, {
    node_id: 'cloud-sdk-rl',
    labels: ['cloud', 'provider_openai'],
    supported_providers: ['openai'],
    rate_limits: { rpm: 1 },
  });
  const job = await leasedJob(limited, 'task-sdk-rl');
  const client = openai(job.agentToken);
  await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'one' }] });
  const second = await failure(client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'two' }] }));
  t.true(second instanceof OpenAI.RateLimitError);
  t.is(second?.code, 'rate_limited');
  t.true(Number(second?.headers?.get('retry-after')) >= 1);
});

test.serial('a lease that ends mid-session refuses the agent token at once', async (t) => {
  const session = await leasedJob(worker, 'task-sdk-end');
  const client = anthropic(session.agentToken);
  await client.messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 8, messages: [{ role: 'user', content: 'first' }] });
  const { lease_id: leaseId } = (await gw.gateway.db.knex('jobs').where({ id: session.jobId }).first('lease_id')) as { lease_id: string };
  const done = await call(gw.url('control'), '/result', {
    token: worker.token,
    json: { job_id: session.jobId, lease_id: leaseId, status: 'succeeded', result: { ok: true } },
  });
  t.is(done.status, 200);
  const after = await failure(
    client.messages.create({ model: 'claude-3-5-haiku-latest', max_tokens: 8, messages: [{ role: 'user', content: 'again' }] }),
  );
  t.true(after instanceof Anthropic.PermissionDeniedError);
  t.is((after?.error as { error?: { type?: string } }).error?.type, 'job_not_leased');
});

test.serial('a provider error mid-stream reaches the SDK as the provider error event, and what was delivered is charged', async (t) => {
  const task = 'task-sdk-mid';
  const job = await leasedJob(worker, task);
  fake.next('error-mid-stream');
  const { text, err } = await streamUntilError(job.agentToken);
  t.true(err instanceof OpenAI.APIError);
  t.regex(String(err?.message), /fake overload mid-stream/);
  t.is(text, 'Hello from');
  fake.next('error-mid-stream');
  const anthropicErr = await failure(
    anthropic(job.agentToken)
      .messages.stream({ model: 'claude-3-5-haiku-latest', max_tokens: 64, messages: [{ role: 'user', content: 'x' }] })
      .finalMessage(),
  );
  t.true(anthropicErr instanceof Anthropic.APIError);
  t.regex(String(anthropicErr?.message), /overloaded_error|fake overload/);
  // The SDK raises at the error event; the final gate audits once the stream has ended.
  const audited = () =>
    gw.gateway.db.knex('api_audit').where({ task_id: task, gate: 'egress' }).select('cost_usd', 'outcome') as Promise<
      { cost_usd: string; outcome: string }[]
    >;
  await eventually(async () => (await audited()).length === 2, 5000);
  await gw.gateway.egress.settled();
  const rows = await audited();
  t.is(rows.length, 2);
  t.true(
    rows.every((r) => r.outcome === 'error' && Number(r.cost_usd) > 0),
    'a broken stream is charged for what it delivered',
  );
});

test.serial(
  'a provider that cuts the connection mid-stream: the SDK raises the gateway error event, and the call is charged',
  async (t) => {
    const task = 'task-sdk-drop';
    const job = await leasedJob(worker, task);
    fake.next('drop');
    const { text, err } = await streamUntilError(job.agentToken);
    t.true(err instanceof OpenAI.APIError);
    t.is(err?.code, 'provider_stream_interrupted');
    // The socket is destroyed right after the second word, which may or may not have left.
    t.true(['Hello', 'Hello from'].includes(text), `what arrived before the break reached the caller: '${text}'`);
    const audited = () =>
      gw.gateway.db.knex('api_audit').where({ task_id: task, gate: 'egress' }).select('cost_usd', 'error_code') as Promise<
        { cost_usd: string; error_code: string }[]
      >;
    await eventually(async () => (await audited()).length === 1, 5000);
    const [row] = await audited();
    t.is(row?.error_code, 'provider_stream_interrupted');
    t.true(Number(row?.cost_usd) > 0);
  },
);
