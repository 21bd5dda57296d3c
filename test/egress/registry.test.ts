import test from 'ava';
import { adapterFor, PROVIDERS } from '../../src/egress/providers/registry.js';
import { openAiCompatible } from '../../src/egress/providers/openai.js';
import { GatewayError } from '../../src/errors/index.js';

test('every registry line is keyed by its adapter name', (t) => {
  for (const [key, adapter] of Object.entries(PROVIDERS)) t.is(adapter.name, key);
});

test('an unknown provider or operation is refused with bad_request', (t) => {
  for (const [provider, operation] of [
    ['nope', 'chat.completions'],
    ['constructor', 'chat.completions'],
    ['openai', 'messages'],
    ['anthropic', 'embeddings'],
  ] as const) {
    const err = t.throws(() => adapterFor(provider, operation), { instanceOf: GatewayError });
    t.is(err?.code, 'bad_request');
  }
});

test('an OpenAI-compatible provider speaks in its own name', async (t) => {
  const other = openAiCompatible('other');
  t.is(other.name, 'other');
  t.deepEqual(other.operations, PROVIDERS.openai!.operations);
  t.is(t.throws(() => other.prepare('messages', { model: 'm', messages: [] }))?.message, "other has no operation 'messages'");
  const prepared = other.prepare('chat.completions', { model: 'm-1', messages: [{ role: 'user', content: 'hi' }] });
  t.is(prepared.path, '/v1/chat/completions');
  t.deepEqual(other.authHeaders('k'), { authorization: 'Bearer k' });
  async function* cut() {
    yield { event: undefined, data: JSON.stringify({ id: 'x', model: 'm-1', choices: [{ delta: { content: 'a' } }] }) };
  }
  const err = await t.throwsAsync(other.parseStream('chat.completions', cut()), { instanceOf: GatewayError });
  t.is(err?.code, 'provider_stream_interrupted');
  t.is(err?.message, 'the other stream ended before [DONE]');
});
