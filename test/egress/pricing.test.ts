import test from 'ava';
import { costOf, type ModelPrice, priceOf, type PriceTable, priceTableFrom, type Usage, worstCaseCost } from '../../src/egress/pricing.js';
import { GatewayError } from '../../src/errors/index.js';

const table: PriceTable = {
  version: 'test-1',
  models: {
    'chat-small': { provider: 'openai', input: 0.15, cached_input: 0.075, output: 0.6 },
    'claude-x': { provider: 'anthropic', input: 1, cached_input: 0.1, cache_write: 1.25, output: 5 },
  },
};
const usage = (over: Partial<Usage>): Usage => ({
  input_tokens: 0,
  cached_input_tokens: 0,
  cache_write_tokens: 0,
  output_tokens: 0,
  ...over,
});
const price = (name: string): ModelPrice => table.models[name]!;

test('the price table is read from data.config.pricing', (t) => {
  t.is(priceTableFrom({ config: { pricing: table } }), table);
});

test('a missing or malformed price table fails closed with bundle_unavailable', (t) => {
  for (const data of [
    undefined,
    {},
    { config: {} },
    { config: { pricing: { models: {} } } },
    { config: { pricing: { version: 'v', models: null } } },
    { config: { pricing: { version: 'v', models: 'x' } } },
  ]) {
    const err = t.throws(() => priceTableFrom(data as Record<string, unknown> | undefined), { instanceOf: GatewayError });
    t.is(err?.code, 'bundle_unavailable');
  }
});

test('a model is priced only under its own provider', (t) => {
  t.is(priceOf(table, 'openai', 'chat-small'), price('chat-small'));
  for (const [provider, model] of [
    ['anthropic', 'chat-small'],
    ['openai', 'unknown-model'],
    ['openai', 'constructor'],
    ['openai', '__proto__'],
  ] as const) {
    const err = t.throws(() => priceOf(table, provider, model), { instanceOf: GatewayError });
    t.is(err?.code, 'policy_denied');
    t.deepEqual(err?.details, { reasons: ['model_not_priced'] });
  }
});

test('cost counts each kind of token at its own price, per million', (t) => {
  t.is(costOf(usage({ input_tokens: 1_000_000 }), price('chat-small')), 0.15);
  t.is(costOf(usage({ cached_input_tokens: 1_000_000 }), price('chat-small')), 0.075);
  t.is(costOf(usage({ output_tokens: 1_000_000 }), price('chat-small')), 0.6);
  t.is(costOf(usage({ cache_write_tokens: 1_000_000 }), price('claude-x')), 1.25);
  t.is(
    costOf(usage({ cache_write_tokens: 1_000_000 }), price('chat-small')),
    0.15,
    'no cache-write price: cache writes cost the input price',
  );
  t.is(costOf(usage({}), price('claude-x')), 0);
});

test('cost is rounded up to the micro-dollar, never down', (t) => {
  t.is(costOf(usage({ input_tokens: 1 }), price('chat-small')), 0.000001);
  t.is(costOf(usage({ output_tokens: 3 }), price('chat-small')), 0.000002);
});

test('the worst case counts every input character at the dearest input price, plus the output cap', (t) => {
  // claude-x: the dearest input price is the cache write, 1.25.
  t.is(worstCaseCost(1_000_000, 0, price('claude-x')), 1.25);
  t.is(worstCaseCost(0, 1_000_000, price('claude-x')), 5);
  t.is(worstCaseCost(1, 1, price('chat-small')), 0.000001);
  t.is(worstCaseCost(0, 0, price('chat-small')), 0);
});

test('no real usage within the bounds the worst case assumes costs more than it', (t) => {
  const p = price('claude-x');
  const inputChars = 4000;
  const maxOutput = 500;
  const bound = worstCaseCost(inputChars, maxOutput, p);
  for (const u of [
    usage({ input_tokens: inputChars, output_tokens: maxOutput }),
    usage({ cache_write_tokens: inputChars, output_tokens: maxOutput }),
    usage({ cached_input_tokens: inputChars }),
  ]) {
    t.true(costOf(u, p) <= bound);
  }
});
