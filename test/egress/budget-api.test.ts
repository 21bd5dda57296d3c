import { randomBytes } from 'node:crypto';
import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { call } from '../helpers/http.js';

let fake: FakeProvider;
const gateways: Record<'postgres' | 'embedded', BootedGateway | undefined> = { postgres: undefined, embedded: undefined };

test.before(async () => {
  fake = await startFakeProvider();
  const env = { CYNODE_OPENAI_BASE_URL: fake.url, CYNODE_ANTHROPIC_BASE_URL: fake.url };
  gateways.postgres = await bootGateway({ env, roles: ['control', 'egress'] });
  gateways.embedded = await bootGateway({ env, roles: ['control', 'egress'], database: 'embedded' });
  for (const gw of Object.values(gateways)) {
    const base = gw!.url('control');
    await call(base, '/v1/credentials', { json: { provider: 'openai', name: 'main', secret: `sk-${randomBytes(16).toString('hex')}` } });
    await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  }
});
test.after.always(async () => {
  await gateways.postgres?.stop();
  await gateways.embedded?.stop();
  await fake?.close();
});

const chat = (task: string, model: string) => ({
  provider: 'openai',
  operation: 'chat.completions',
  task_id: task,
  params: { model, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 16 },
});

for (const name of ['postgres', 'embedded'] as const) {
  test(`${name}: a budget's period, soft limit and model are set and answered with the period's spend and resets_at`, async (t) => {
    const base = gateways[name]!.url('control');
    const put = await call<Record<string, unknown>>(base, '/v1/budgets/user/alice?model=gpt-4o', {
      method: 'PUT',
      json: { limit_usd: 5, period: 'day', soft_limit_usd: 4 },
    });
    t.is(put.status, 200, JSON.stringify(put.body));
    const midnight = new Date();
    midnight.setUTCHours(24, 0, 0, 0);
    t.like(put.body, { scope: 'user', id: 'alice', model: 'gpt-4o', period: 'day', reset: 'calendar', soft_limit_usd: 4, spent_usd: 0 });
    t.is(put.body.resets_at, midnight.toISOString());
    t.like((await call(base, '/v1/budgets/user/alice?model=gpt-4o')).body, { period: 'day', limit_usd: 5 });
    t.is((await call(base, '/v1/budgets/user/alice')).status, 404, 'no budget for every model');
    const lifetime = await call<Record<string, unknown>>(base, '/v1/budgets/group/g1', { method: 'PUT', json: { limit_usd: 2 } });
    t.like(lifetime.body, { scope: 'group', period: 'total', period_start: null, resets_at: null, model: null, soft_limit_usd: null });
    const listed = await call<{ budgets: { scope: string }[] }>(base, '/v1/budgets?scope=group');
    t.deepEqual(
      listed.body.budgets.map((b) => b.scope),
      ['group'],
    );
    for (const bad of [
      { limit_usd: 1, period: 'hour' },
      { limit_usd: 1, reset: 'sometimes' },
      { limit_usd: 1, soft_limit_usd: -1 },
    ]) {
      const res = await call<{ error: { code: string } }>(base, '/v1/budgets/task/t1', { method: 'PUT', json: bad });
      t.is(res.status, 422, JSON.stringify(bad));
      t.is(res.body.error.code, 'budget_invalid');
    }
    const clash = await call<{ error: { code: string } }>(base, '/v1/budgets/task/t1?model=gpt-4o', {
      method: 'PUT',
      json: { limit_usd: 1, model: 'gpt-4o-mini' },
    });
    t.is(clash.body.error.code, 'budget_invalid');
  });

  test(`${name}: a task's budget for one model refuses that model's call and not another's`, async (t) => {
    const base = gateways[name]!.url('control');
    await call(base, '/v1/budgets/task/task-model', { method: 'PUT', json: { limit_usd: 1 } });
    await call(base, '/v1/budgets/task/task-model?model=gpt-4o', { method: 'PUT', json: { limit_usd: 0, period: 'week' } });
    const refused = await call<{ error: { code: string } }>(base, '/v1/api/call', { json: chat('task-model', 'gpt-4o') });
    t.is(refused.status, 402);
    t.is(refused.body.error.code, 'budget_exceeded');
    const other = await call(base, '/v1/api/call', { json: chat('task-model', 'gpt-4o-mini') });
    t.is(other.status, 200, JSON.stringify(other.body));
    await gateways[name]!.gateway.egress.settled();
    const spent = await call<{ spent_usd: number }>(base, '/v1/budgets/task/task-model');
    t.true(spent.body.spent_usd > 0);
  });
}
