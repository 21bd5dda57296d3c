import test from 'ava';
import { callProvider, type CallOptions } from '../../src/egress/client.js';
import { costOf, priceOf, priceTableFrom, worstCaseCost } from '../../src/egress/pricing.js';
import { adapterFor } from '../../src/egress/providers/registry.js';
import { GatewayError } from '../../src/errors/index.js';
import { parseBundle } from '../../src/policy/index.js';
import { readFile } from 'node:fs/promises';
import { ensureBundle } from '../helpers/bundle.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';

const KEY = 'sk-fake-0123456789abcdefghijklmnop';
let fake: FakeProvider;
let options: CallOptions;

test.before(async () => {
  fake = await startFakeProvider();
  options = { baseUrl: fake.url, secret: KEY, connectTimeoutMs: 1000, idleTimeoutMs: 300, maxRetries: 2, maxRetryWaitMs: 2000 };
});
test.after.always(() => fake?.close());

const call = async (provider: string, operation: string, params: unknown, over: Partial<CallOptions> = {}) => {
  const adapter = adapterFor(provider, operation);
  return callProvider(adapter, operation, adapter.prepare(operation, params), { ...options, ...over });
};
const messages = [{ role: 'user', content: 'Say hello' }];
const codeOf = async (p: Promise<unknown>) =>
  (
    (await p.then(
      () => null,
      (e: unknown) => e,
    )) as GatewayError | null
  )?.code;

test.serial('OpenAI chat completions: the key is injected, usage normalised, output capped', async (t) => {
  const out = await call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages, max_tokens: 3 });
  const sent = fake.received.at(-1)!;
  t.is(sent.headers.authorization, `Bearer ${KEY}`);
  t.is(sent.body.max_completion_tokens, 3);
  t.false('max_tokens' in sent.body);
  t.is(out.model, 'gpt-4o-mini-2026-01-01');
  t.deepEqual(out.usage, {
    input_tokens: sent.body.messages ? Math.ceil(JSON.stringify(messages).length / 4) : 0,
    cached_input_tokens: 0,
    cache_write_tokens: 0,
    output_tokens: 3,
  });
  t.is((out.result as { choices: { message: { content: string } }[] }).choices[0]!.message.content, 'Hello from the fake provider');
});

test.serial('OpenAI streaming: usage is forced on and the answer is assembled from the events', async (t) => {
  const out = await call('openai', 'chat.completions', {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'cached context please' }],
    stream: true,
  });
  const sent = fake.received.at(-1)!;
  t.deepEqual(sent.body.stream_options, { include_usage: true });
  const result = out.result as { choices: { message: { content: string }; finish_reason: string }[] };
  t.is(result.choices[0]!.message.content, 'Hello from the fake provider');
  t.is(result.choices[0]!.finish_reason, 'stop');
  t.true(out.usage.cached_input_tokens > 0, 'cached prompt tokens counted apart');
  t.is(out.usage.output_tokens, 5);
  t.true(out.ttftMs <= out.latencyMs);
});

test.serial('OpenAI embeddings', async (t) => {
  const out = await call('openai', 'embeddings', { model: 'text-embedding-3-small', input: ['a', 'b'] });
  t.is(out.usage.output_tokens, 0);
  t.true(out.usage.input_tokens > 0);
  t.is(await codeOf(call('openai', 'embeddings', { model: 'text-embedding-3-small', input: 7 })), 'bad_request');
});

test.serial('Anthropic messages, plain and streamed, with cache reads and writes counted', async (t) => {
  const plain = await call('anthropic', 'messages', { model: 'claude-3-5-haiku-latest', messages, max_tokens: 64 });
  const sent = fake.received.at(-1)!;
  t.is(sent.headers['x-api-key'], KEY);
  t.is(sent.headers['anthropic-version'], '2023-06-01');
  t.is(plain.usage.output_tokens, 5);
  const cachedMessages = [{ role: 'user', content: [{ type: 'text', text: 'long context', cache_control: { type: 'ephemeral' } }] }];
  const streamed = await call('anthropic', 'messages', { model: 'claude-3-5-haiku-latest', messages: cachedMessages, stream: true });
  t.is(fake.received.at(-1)!.body.max_tokens, 4096, 'an output cap is always set');
  t.deepEqual(
    { read: streamed.usage.cached_input_tokens, write: streamed.usage.cache_write_tokens, out: streamed.usage.output_tokens },
    { read: 100, write: 20, out: 5 },
  );
  t.deepEqual((streamed.result as { content: { text: string }[] }).content[0]!.text, 'Hello from the fake provider');
});

test.serial('429 and 503 are retried, honouring Retry-After; other failures map to stable codes', async (t) => {
  fake.next({ status: 429, retryAfter: '0' }, { status: 503 });
  const out = await call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages });
  t.is(out.attempts, 3);
  fake.next({ status: 429, retryAfter: '60' });
  const limited = await call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages }).catch((e: GatewayError) => e);
  t.is((limited as GatewayError).code, 'provider_rate_limited', 'a wait past maxRetryWaitMs is not sat out');
  t.is((limited as GatewayError).details?.retry_after_s, 60);
  fake.next({ status: 500 });
  t.is(
    await codeOf(call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages })),
    'provider_error',
    'a 500 may have done work: not repeated',
  );
  fake.next({ status: 401 });
  t.is(await codeOf(call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages })), 'provider_auth_failed');
  fake.next({ status: 400 });
  t.is(await codeOf(call('anthropic', 'messages', { model: 'claude-3-5-haiku-latest', messages })), 'provider_bad_request');
});

test.serial('a provider that echoes the credential never gets it past the client', async (t) => {
  fake.next('echo-key');
  const err = (await call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages }).catch((e: unknown) => e)) as GatewayError;
  t.is(err.code, 'provider_bad_request');
  t.false(JSON.stringify({ m: err.message, d: err.details }).includes(KEY));
  t.regex(err.message, /\[REDACTED\]/);
});

test.serial('hangs, stalls and dropped streams fail with timeouts or interruptions, quickly', async (t) => {
  fake.next('hang');
  let started = Date.now();
  t.is(
    await codeOf(call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages }, { connectTimeoutMs: 200, maxRetries: 0 })),
    'provider_timeout',
  );
  t.true(Date.now() - started < 1500);
  fake.next('stall');
  started = Date.now();
  t.is(await codeOf(call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages, stream: true })), 'provider_timeout');
  t.true(Date.now() - started < 1500, 'the idle timeout cut the silent stream');
  fake.next('drop');
  t.is(
    await codeOf(call('anthropic', 'messages', { model: 'claude-3-5-haiku-latest', messages, stream: true })),
    'provider_stream_interrupted',
  );
  t.is(
    await codeOf(call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages }, { baseUrl: 'http://127.0.0.1:1', maxRetries: 0 })),
    'provider_unreachable',
  );
});

test.serial('streamed answers keep the connection alive: the tail after the terminator is read, for a bounded time', async (t) => {
  const own = await startFakeProvider();
  t.teardown(() => own.close());
  const over = { baseUrl: own.url };
  const stream = { model: 'gpt-4o-mini', messages, stream: true };
  for (let i = 0; i < 5; i++) t.is((await call('openai', 'chat.completions', stream, over)).model, 'gpt-4o-mini-2026-01-01');
  for (let i = 0; i < 5; i++)
    t.is(
      (await call('anthropic', 'messages', { model: 'claude-sonnet-4-5', messages, max_tokens: 8, stream: true }, over)).usage
        .output_tokens,
      5,
    );
  t.is(own.connections(), 1, 'ten streamed calls in turn, one connection');
  // A provider that never ends the body after [DONE]: the answer still comes at once, and the connection is given up.
  own.next('linger');
  const started = performance.now();
  t.is((await call('openai', 'chat.completions', stream, over)).model, 'gpt-4o-mini-2026-01-01');
  t.true(performance.now() - started < 1000);
  await call('openai', 'chat.completions', stream, over);
  t.is(own.connections(), 2);
});

test.serial('bad params and unknown providers are refused before any call', async (t) => {
  const before = fake.received.length;
  t.is(
    await codeOf(Promise.resolve().then(() => call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages: [] }))),
    'bad_request',
  );
  t.is(
    await codeOf(Promise.resolve().then(() => call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages, n: 3 }))),
    'bad_request',
  );
  t.is(
    await codeOf(Promise.resolve().then(() => call('openai', 'chat.completions', { model: 'gpt-4o-mini', messages, max_tokens: 1e9 }))),
    'bad_request',
  );
  t.is(await codeOf(Promise.resolve().then(() => call('shadyai', 'chat.completions', {}))), 'bad_request');
  t.is(await codeOf(Promise.resolve().then(() => call('openai', 'images.generate', {}))), 'bad_request');
  t.is(fake.received.length, before);
});

test('the shipped price table prices every call; the worst case bounds the real cost', async (t) => {
  const table = priceTableFrom(parseBundle(await readFile(await ensureBundle())).data as Record<string, unknown>);
  t.is(table.version, '2026-11-01');
  const price = priceOf(table, 'openai', 'gpt-4o-mini');
  t.is(costOf({ input_tokens: 1_000_000, cached_input_tokens: 0, cache_write_tokens: 0, output_tokens: 1_000_000 }, price), 0.75);
  t.is(costOf({ input_tokens: 0, cached_input_tokens: 1_000_000, cache_write_tokens: 0, output_tokens: 0 }, price), 0.075);
  const haiku = priceOf(table, 'anthropic', 'claude-3-5-haiku-latest');
  t.is(costOf({ input_tokens: 0, cached_input_tokens: 0, cache_write_tokens: 1_000_000, output_tokens: 0 }, haiku), 1);
  t.throws(() => priceOf(table, 'anthropic', 'gpt-4o-mini'), { instanceOf: GatewayError });
  t.throws(() => priceTableFrom({}), { instanceOf: GatewayError });

  const adapter = adapterFor('openai', 'chat.completions');
  const prepared = adapter.prepare('chat.completions', { model: 'gpt-4o-mini', messages, max_tokens: 5 });
  const out = await callProvider(adapter, 'chat.completions', prepared, options);
  t.true(costOf(out.usage, price) <= worstCaseCost(prepared.inputChars, prepared.maxOutputTokens, price));
});
