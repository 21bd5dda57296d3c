import { randomBytes } from 'node:crypto';
import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { call } from '../helpers/http.js';

// Spend and a decision's audit trail from real api.calls through both gates to a fake provider.
let gw: BootedGateway;
let base: string;
let fake: FakeProvider;

test.before(async () => {
  fake = await startFakeProvider();
  gw = await bootGateway({ env: { CYNODE_OPENAI_BASE_URL: fake.url }, roles: ['control', 'egress'] });
  base = gw.url('control');
  await call(base, '/v1/credentials', {
    json: { provider: 'openai', name: 'main', secret: `sk-openai-${randomBytes(20).toString('hex')}` },
  });
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  for (const task of ['task-big', 'task-small']) await call(base, `/v1/budgets/task/${task}`, { method: 'PUT', json: { limit_usd: 1 } });
});
test.after.always(async () => {
  await gw?.stop();
  await fake?.close();
});

const apiCall = async (task: string, maxTokens: number) => {
  const res = await call<Record<string, any>>(base, '/v1/api/call', {
    json: {
      provider: 'openai',
      operation: 'chat.completions',
      task_id: task,
      params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens },
    },
  });
  if (res.status !== 200) throw new Error(JSON.stringify(res.body));
  return res.body as { cost_usd: number; decision_id: string; request_id: string };
};

test('spend sums what the final gate settled, per hour and per task, with nothing left held', async (t) => {
  const calls = [await apiCall('task-big', 16), await apiCall('task-big', 16), await apiCall('task-small', 16)];
  await gw.gateway.audit.flush();
  await gw.gateway.egress.settled();
  const spend = (await call<Record<string, any>>(base, '/v1/spend')).body;
  const total = calls.reduce((n, c) => n + c.cost_usd, 0);
  t.true(total > 0);
  t.is(spend.calls, 3);
  t.true(Math.abs(spend.total_usd - total) < 1e-9);
  t.is(spend.hours.length, 1);
  t.deepEqual(
    spend.top_tasks.map((x: { task_id: string; calls: number }) => [x.task_id, x.calls]),
    [
      ['task-big', 2],
      ['task-small', 1],
    ],
  );
  t.deepEqual(spend.reservations, { held: 0, held_usd: 0 });

  const trail = (await call<{ api_audit: Record<string, unknown>[] }>(base, `/v1/decisions/${calls[2]!.decision_id}/audit`)).body;
  t.is(trail.api_audit.length, 1, 'the api.call decision led to its audit row');
  t.like(trail.api_audit[0], { request_id: calls[2]!.request_id, gate: 'egress', outcome: 'ok', task_id: 'task-small' });
  t.false('hash' in trail.api_audit[0]!);
});
