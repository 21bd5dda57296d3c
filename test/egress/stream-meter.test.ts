import test from 'ava';
import { anthropic } from '../../src/egress/providers/anthropic.js';
import { openai } from '../../src/egress/providers/openai.js';
import { type RawSseEvent, sseEvents } from '../../src/egress/providers/sse.js';

async function* chunked(text: string, size: number): AsyncGenerator<Uint8Array> {
  const bytes = Buffer.from(text, 'utf8');
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}
const collect = async (text: string, size: number) => {
  const out: RawSseEvent[] = [];
  for await (const e of sseEvents(chunked(text, size))) out.push(e);
  return out;
};

test('a stream splits into its events with their exact text, however the bytes arrive', async (t) => {
  const text = 'event: a\r\ndata: {"x":"é"}\r\n\r\n: keep-alive\n\ndata: one\ndata: two\n\nevent: b\rdata: 3\r\rdata: tail';
  for (const size of [1, 2, 3, 7, 64, 1024]) {
    const events = await collect(text, size);
    t.is(events.map((e) => e.raw).join(''), text, `chunks of ${size}: every byte passed on`);
    t.deepEqual(
      events.map((e) => [e.event, e.data, e.carriesData]),
      [
        ['a', '{"x":"é"}', true],
        [undefined, '', false],
        [undefined, 'one\ntwo', true],
        ['b', '3', true],
        [undefined, 'tail', true],
      ],
      `chunks of ${size}`,
    );
  }
});

const prepared = (over: Record<string, unknown> = {}) => ({
  path: '/v1/chat/completions',
  body: {},
  stream: true,
  model: 'gpt-4o-mini',
  inputChars: 120,
  maxOutputTokens: 16,
  ...over,
});
const event = (data: unknown, name?: string): RawSseEvent => {
  const json = typeof data === 'string' ? data : JSON.stringify(data);
  return { raw: `${name ? `event: ${name}\n` : ''}data: ${json}\n\n`, event: name, data: json, carriesData: true };
};

test('a forced usage report is dropped from a chat stream, with the null usage of every chunk, the rest kept byte for byte', (t) => {
  const meter = openai.meter('chat.completions', prepared({ usageForced: true }));
  const chunk = event({ id: 'c', model: 'gpt-4o-mini-1', choices: [{ index: 0, delta: { content: 'héllo' } }], usage: null });
  t.is(
    meter.relay(chunk),
    `data: ${JSON.stringify({ id: 'c', model: 'gpt-4o-mini-1', choices: [{ index: 0, delta: { content: 'héllo' } }] })}\n\n`,
  );
  // A member spelled in a string is not a member: only the real one goes.
  const tricky = `data: {"choices":[{"delta":{"content":"say \\"usage\\":null"}}],"usage":null}\n\n`;
  t.is(
    meter.relay({ ...event(''), raw: tricky, data: tricky.slice(6, -2) }),
    `data: {"choices":[{"delta":{"content":"say \\"usage\\":null"}}]}\n\n`,
  );
  t.is(meter.relay(event({ id: 'c', choices: [], usage: { prompt_tokens: 9, completion_tokens: 2 } })), null);
  t.false(meter.complete);
  t.is(meter.relay(event('[DONE]')), 'data: [DONE]\n\n');
  t.true(meter.complete);
  t.deepEqual(meter.usage(), { input_tokens: 9, cached_input_tokens: 0, cache_write_tokens: 0, output_tokens: 2 });
  t.is(meter.model, 'gpt-4o-mini-1');
});

test('a caller that asked for usage gets the chat stream as it is', (t) => {
  const meter = openai.meter('chat.completions', prepared());
  const usage = event({ id: 'c', choices: [], usage: { prompt_tokens: 9, completion_tokens: 2 } });
  const chunk = event({ id: 'c', choices: [{ index: 0, delta: { content: 'x' } }], usage: null });
  t.is(meter.relay(chunk), chunk.raw);
  t.is(meter.relay(usage), usage.raw);
});

test('a stream that stops early is charged the input bound and the bytes delivered, capped, never less than reported', (t) => {
  const chat = openai.meter('chat.completions', prepared());
  chat.relay(event({ choices: [{ delta: { content: 'héllo', tool_calls: [{ function: { name: 'f', arguments: '{"a":1}' } }] } }] }));
  // "héllo" is 6 UTF-8 bytes, "f" 1, '{"a":1}' 7.
  t.deepEqual(chat.usage(), { input_tokens: 120, cached_input_tokens: 0, cache_write_tokens: 0, output_tokens: 14 });
  chat.relay(event({ choices: [{ delta: { content: 'x'.repeat(100) } }] }));
  t.is(chat.usage().output_tokens, 16, 'never more than the cap');

  const msgs = anthropic.meter('messages', prepared({ path: '/v1/messages' }));
  msgs.relay(
    event(
      { type: 'message_start', message: { model: 'claude-x', usage: { input_tokens: 30, cache_read_input_tokens: 5, output_tokens: 1 } } },
      'message_start',
    ),
  );
  msgs.relay(event({ type: 'content_block_delta', delta: { type: 'text_delta', text: 'ab' } }, 'content_block_delta'));
  t.deepEqual(msgs.usage(), { input_tokens: 30, cached_input_tokens: 5, cache_write_tokens: 0, output_tokens: 2 }, 'the input as reported');
  msgs.relay(event({ type: 'message_delta', usage: { output_tokens: 9 } }, 'message_delta'));
  t.is(msgs.usage().output_tokens, 9, 'never less than the provider reported');
  msgs.relay(event({ type: 'message_delta', usage: { output_tokens: 11 } }, 'message_delta'));
  msgs.relay(event({ type: 'message_stop' }, 'message_stop'));
  t.true(msgs.complete);
  t.deepEqual(
    msgs.usage(),
    { input_tokens: 30, cached_input_tokens: 5, cache_write_tokens: 0, output_tokens: 11 },
    'message_start, overwritten by the last cumulative message_delta: never summed',
  );
  t.is(msgs.model, 'claude-x');
});

test('provider error events mark the stream failed and pass on; the gateway writes its own in each provider form', (t) => {
  const chat = openai.meter('chat.completions', prepared());
  const err = event({ error: { message: 'overloaded', code: 'overloaded' } });
  t.is(chat.relay(err), err.raw);
  t.deepEqual(chat.failure, { code: 'overloaded', message: 'overloaded' });
  const responses = openai.meter('responses', prepared({ path: '/v1/responses' }));
  responses.relay(event({ type: 'response.failed', response: { error: { code: 'server_error', message: 'boom' } } }, 'response.failed'));
  t.deepEqual(responses.failure, { code: 'server_error', message: 'boom' });
  const failure = { code: 'provider_timeout', message: 'quiet' };
  t.is(
    openai.streamError('chat.completions', failure),
    `data: {"error":{"message":"quiet","type":"provider_timeout","code":"provider_timeout","param":null}}\n\n`,
  );
  t.regex(openai.streamError('responses', failure), /^event: error\ndata: \{"type":"error","code":"provider_timeout"/);
  t.is(
    anthropic.streamError('messages', failure),
    `event: error\ndata: {"type":"error","error":{"type":"provider_timeout","message":"quiet"}}\n\n`,
  );
});

test('the Responses API and token counting are prepared for what they cost', (t) => {
  const r = openai.prepare('responses', { model: 'gpt-4o-mini', input: 'hi', max_output_tokens: 64, store: false });
  t.like(r, { path: '/v1/responses', maxOutputTokens: 64, stream: false });
  t.like(r.body, { store: false, max_output_tokens: 64 });
  t.is(openai.prepare('responses', { model: 'gpt-4o-mini', input: [] }).maxOutputTokens, 4096, 'a cap is forced');
  for (const bad of [
    { model: 'gpt-4o-mini' },
    { model: 'gpt-4o-mini', input: 'x', previous_response_id: 'r' },
    { model: 'gpt-4o-mini', input: 'x', background: true },
    { model: 'gpt-4o-mini', input: 'x', tools: [{ type: 'web_search' }] },
  ])
    t.throws(() => openai.prepare('responses', bad), { message: /input|background|billed apart/ });
  const counted = anthropic.prepare('messages.count_tokens', {
    model: 'claude-3-5-haiku-latest',
    messages: [{ role: 'user', content: 'x' }],
  });
  t.like(counted, { path: '/v1/messages/count_tokens', inputChars: 0, maxOutputTokens: 0 });
  t.deepEqual(anthropic.parse('messages.count_tokens', { input_tokens: 12 }).usage, {
    input_tokens: 0,
    cached_input_tokens: 0,
    cache_write_tokens: 0,
    output_tokens: 0,
  });
});
