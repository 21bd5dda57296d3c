import test from 'ava';
import { bootGateway } from '../helpers/boot.js';
import { buildCustomBundle } from '../helpers/bundle.js';
import { call, eventually } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import type { TestGateway } from '../helpers/start.js';

// A register policy that reads the runtime kill switch: cloud nodes are refused while
// data.runtime.settings["cloud_routing.enabled"] is false.
const killSwitchRego = [
  'package cynode.register',
  '',
  'decision := {"allow": count(deny) == 0, "reasons": sort(deny)}',
  '',
  'deny contains "context_missing" if not input.subject.node_id',
  '',
  'deny contains "cloud_routing_disabled" if {',
  '\t"cloud" in input.subject.labels',
  '\tdata.runtime.settings["cloud_routing.enabled"] == false',
  '}',
  '',
].join('\n');

let pgDb: TestDatabase;
const gateways: TestGateway[] = [];

test.before(async () => {
  pgDb = await createTestDatabase();
  const bundle = await buildCustomBundle({ 'cynode/register/r.rego': killSwitchRego }, { revision: 'kill-switch' });
  for (let i = 0; i < 2; i++) gateways.push(await bootGateway({ env: { CYNODE_BUNDLE: bundle }, roles: ['control'], database: pgDb }));
});
test.after.always(async () => {
  await Promise.all(gateways.map((g) => g.gateway.stop()));
  await pgDb?.drop();
});

const cloudNode = { input: { subject: { node_id: 'c1', labels: ['cloud'] } } };
const decide = async (g: TestGateway) =>
  (await call<{ result: { allow: boolean; reasons: string[] } }>(g.url(), '/v1/data/cynode/register/decision', { json: cloudNode })).body
    .result;

test.serial('the kill switch acts on the next decision here and, through NOTIFY, on the other replica', async (t) => {
  const [a, b] = gateways as [TestGateway, TestGateway];
  t.true((await decide(a)).allow);
  t.true((await decide(b)).allow);

  const put = await call<Record<string, unknown>>(a.url(), '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: false } });
  t.is(put.status, 200);
  t.like(put.body, { key: 'cloud_routing.enabled', value: false, updatedBy: 'admin' });
  t.deepEqual(await decide(a), { allow: false, reasons: ['cloud_routing_disabled'] }, 'same replica: the very next decision');
  const ms = await eventually(async () => !(await decide(b)).allow, 3000, 10);
  t.log(`propagated to the second replica in ${ms} ms`);
  t.true(ms < 1000);

  const got = await call<Record<string, unknown>>(b.url(), '/v1/settings/cloud_routing.enabled');
  t.like(got.body, { key: 'cloud_routing.enabled', value: false });

  await call(b.url(), '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: true } });
  await eventually(async () => (await decide(a)).allow, 3000, 10);
  t.true((await decide(b)).allow);
});

test.serial('settings refuse unknown keys, wrong types and malformed bodies', async (t) => {
  const base = gateways[0]!.url();
  const put = (key: string, body: unknown) => call<any>(base, `/v1/settings/${key}`, { method: 'PUT', json: body });
  t.like((await put('cloud_routing.enabeld', { value: true })).body.error, { code: 'setting_unknown' });
  t.is((await put('cloud_routing.enabled', { value: 'no' })).status, 422);
  t.like((await put('cloud_routing.enabled', { value: 'no' })).body.error, { code: 'setting_invalid' });
  t.like((await put('cloud_routing.enabled', { enabled: false })).body.error, { code: 'bad_request' });
  t.is((await call(base, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: false }, token: null })).status, 401);
});
