import { randomBytes } from 'node:crypto';
import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { type Behaviour, type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { call } from '../helpers/http.js';

// A provider that hangs before answering, goes silent mid-stream or cuts the stream: each
// call fails fast with a stable code, and the budget it reserved comes back in full:
// nothing stays reserved and nothing is spent on a call that produced no answer.

let fake: FakeProvider;
let gw: BootedGateway;
let base: string;
type Budget = { spent_usd: number; reserved_usd: number; limit_usd: number };

test.before(async () => {
  fake = await startFakeProvider();
  gw = await bootGateway({
    env: {
      CYNODE_OPENAI_BASE_URL: fake.url,
      CYNODE_ANTHROPIC_BASE_URL: fake.url,
      CYNODE_EGRESS_CONNECT_TIMEOUT_MS: '300',
      CYNODE_EGRESS_IDLE_TIMEOUT_MS: '300',
      CYNODE_EGRESS_MAX_RETRIES: '0',
    },
    roles: ['control', 'egress'],
  });
  base = gw.url('control');
  for (const provider of ['openai', 'anthropic']) {
    await call(base, '/v1/credentials', { json: { provider, name: 'main', secret: `sk-${provider}-${randomBytes(16).toString('hex')}` } });
  }
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
});
test.after.always(async () => {
  await gw?.stop();
  await fake?.close();
});

const request = (provider: 'openai' | 'anthropic', task: string, stream: boolean) =>
  provider === 'openai'
    ? {
        provider,
        operation: 'chat.completions',
        task_id: task,
        params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16, stream },
      }
    : {
        provider,
        operation: 'messages',
        task_id: task,
        params: { model: 'claude-3-5-haiku-latest', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16, stream },
      };

const cases: { name: string; behaviour: Behaviour; provider: 'openai' | 'anthropic'; stream: boolean; status: number; code: string }[] = [
  { name: 'hang before any answer', behaviour: 'hang', provider: 'openai', stream: false, status: 504, code: 'provider_timeout' },
  { name: 'hang before a stream starts', behaviour: 'hang', provider: 'anthropic', stream: true, status: 504, code: 'provider_timeout' },
  { name: 'stream goes silent', behaviour: 'stall', provider: 'openai', stream: true, status: 504, code: 'provider_timeout' },
  { name: 'stream cut (OpenAI)', behaviour: 'drop', provider: 'openai', stream: true, status: 502, code: 'provider_stream_interrupted' },
  {
    name: 'stream cut (Anthropic)',
    behaviour: 'drop',
    provider: 'anthropic',
    stream: true,
    status: 502,
    code: 'provider_stream_interrupted',
  },
];

for (const [i, c] of cases.entries()) {
  test.serial(`a provider whose ${c.name} fails the call fast and releases its reservation`, async (t) => {
    const task = `task-fault-${i}`;
    t.is((await call(base, `/v1/budgets/task/${task}`, { method: 'PUT', json: { limit_usd: 1 } })).status, 200);
    fake.next(c.behaviour);
    const started = Date.now();
    const res = await call<{ error: { code: string } }>(base, '/v1/api/call', { json: request(c.provider, task, c.stream) });
    const ms = Date.now() - started;
    t.is(res.status, c.status, JSON.stringify(res.body));
    t.is(res.body.error.code, c.code);
    t.true(ms < 3000, `answered in ${ms} ms`);
    await gw.gateway.egress.settled();
    const b = (await call<Budget>(base, `/v1/budgets/task/${task}`)).body;
    t.like(b, { reserved_usd: 0, spent_usd: 0 }, 'the reservation came back in full, nothing spent');
    t.log(`${c.name}: ${c.code} after ${ms} ms; reserved ${b.reserved_usd}, spent ${b.spent_usd}`);
  });
}

test.serial('ten concurrent calls into a hanging provider all time out and release every reservation', async (t) => {
  const task = 'task-fault-many';
  t.is((await call(base, `/v1/budgets/task/${task}`, { method: 'PUT', json: { limit_usd: 1 } })).status, 200);
  fake.next(...Array.from({ length: 10 }, () => 'hang' as const));
  const started = Date.now();
  const answers = await Promise.all(
    Array.from({ length: 10 }, () => call<{ error: { code: string } }>(base, '/v1/api/call', { json: request('openai', task, false) })),
  );
  t.deepEqual([...new Set(answers.map((a) => `${a.status} ${a.body.error?.code}`))], ['504 provider_timeout']);
  t.true(Date.now() - started < 5000);
  await gw.gateway.egress.settled();
  t.like((await call<Budget>(base, `/v1/budgets/task/${task}`)).body, { reserved_usd: 0, spent_usd: 0 });
  // Each call was held (alone, or in a prepaid block with others of the burst), and each was released at no cost.
  const held = (await gw.gateway.db.knex.raw(
    `SELECT state, count(*)::int AS n, sum(amount_micros)::int AS amount, sum(cost_micros)::int AS cost FROM budget_reservations
      WHERE holds @> ?::jsonb GROUP BY state`,
    [JSON.stringify([{ scope: 'task', subject_id: task }])],
  )) as { rows: { state: string; n: number; amount: number; cost: number }[] };
  t.is(held.rows.length, 1, JSON.stringify(held.rows));
  t.like(held.rows[0], { state: 'released', cost: 0 });
  t.true(held.rows[0]!.n >= 1 && held.rows[0]!.n <= 10, `${held.rows[0]!.n} reservations for 10 calls`);
  t.true(held.rows[0]!.amount > 0, 'a worst case was held while each call ran');
  // The provider recovered: the next call is answered and charged.
  const ok = await call<{ cost_usd: number }>(base, '/v1/api/call', { json: request('openai', task, false) });
  t.is(ok.status, 200);
  await gw.gateway.egress.settled();
  const after = (await call<Budget>(base, `/v1/budgets/task/${task}`)).body;
  t.like(after, { reserved_usd: 0, spent_usd: ok.body.cost_usd });
});
