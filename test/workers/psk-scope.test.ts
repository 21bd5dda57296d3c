import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { SEED_WORKER } from '../helpers/fixtures.js';
import { call } from '../helpers/http.js';
import { register } from '../helpers/workers.js';

// A scoped PSK registers its own fleet's nodes and nothing else: the register policy sees
// the key (never its secret) as input.subject.psk and denies with a stable reason per scope.

let gw: BootedGateway;
let base: string;

test.before(async () => {
  gw = await bootGateway({ roles: ['control'] });
  base = gw.url();
});
test.after.always(() => gw?.stop());

const FLEET_A = { node_id_pattern: 'fleet-a-*', allowed_labels: ['cloud', 'provider_openai'], regions: ['us-east-1', 'us-west-2'] };

async function scopedPsk(name: string, constraints: unknown) {
  return call<{ id: string; secret: string; constraints: unknown }>(base, '/v1/psks', { json: { name, constraints } });
}

const reasonsOf = (body: Record<string, unknown>) => (body.error as { details: { reasons: string[] } }).details.reasons;

test('a scoped PSK registers a matching worker and is shown with its constraints', async (t) => {
  const psk = await scopedPsk('fleet-a', FLEET_A);
  t.is(psk.status, 201);
  t.deepEqual(psk.body.constraints, FLEET_A);
  const res = await register(base, psk.body.secret, { ...SEED_WORKER, node_id: 'fleet-a-01' });
  t.is(res.status, 200, JSON.stringify(res.body));

  const listed = await call<{ psks: { id: string; constraints: unknown; secret?: string }[] }>(base, '/v1/psks');
  const shown = listed.body.psks.find((p) => p.id === psk.body.id)!;
  t.deepEqual(shown.constraints, FLEET_A);
  t.false(JSON.stringify(listed.body).includes(psk.body.secret.slice(20)), 'no secret in the list');
});

test("a scoped PSK cannot register another fleet's node id, label or region", async (t) => {
  const psk = (await scopedPsk('fleet-a-2', FLEET_A)).body.secret;
  const cases: [Record<string, unknown>, string][] = [
    [{ node_id: 'fleet-b-01' }, 'psk_scope_node_id'],
    [{ node_id: 'fleet-a-02', labels: ['cloud', 'gpu'] }, 'psk_scope_label'],
    [{ node_id: 'fleet-a-03', region: 'eu-west-1' }, 'psk_scope_region'],
  ];
  for (const [override, reason] of cases) {
    const res = await register(base, psk, { ...SEED_WORKER, ...override });
    t.is(res.status, 403, reason);
    t.is((res.body.error as { code: string }).code, 'policy_denied');
    t.deepEqual(reasonsOf(res.body), [reason]);
  }
  await gw.gateway.decisionLog.flush();
  const decisions = (await gw.gateway.db.knex('decision_log').whereLike('path', '%register%').select('input')) as { input: unknown }[];
  t.false(JSON.stringify(decisions).includes(psk.slice(20)), 'the secret never reaches the policy input or the decision log');
});

test('an anchored regex scopes node ids too; an unscoped PSK registers anything', async (t) => {
  const regex = (await scopedPsk('fleet-r', { node_id_pattern: '^fleet-r-[0-9]{2}$' })).body.secret;
  t.is((await register(base, regex, { ...SEED_WORKER, node_id: 'fleet-r-07' })).status, 200);
  const outside = await register(base, regex, { ...SEED_WORKER, node_id: 'fleet-r-007' });
  t.deepEqual(reasonsOf(outside.body), ['psk_scope_node_id']);
  const open = (await scopedPsk('open', null)).body.secret;
  t.is((await register(base, open, { ...SEED_WORKER, node_id: 'anything-01' })).status, 200);
});

test('a capability update through /status stays within the PSK scope', async (t) => {
  const psk = (await scopedPsk('fleet-a-3', FLEET_A)).body.secret;
  const reg = await register(base, psk, { ...SEED_WORKER, node_id: 'fleet-a-09' });
  const token = String(reg.body.token);
  const moved = await call(base, '/status', {
    token,
    json: { capabilities: { ...SEED_WORKER, node_id: 'fleet-a-09', region: 'eu-west-1' } },
  });
  t.is(moved.status, 403);
  t.deepEqual(reasonsOf(moved.body), ['psk_scope_region']);
});

test('constraints are validated: unsafe or unanchored patterns and unknown keys are refused', async (t) => {
  for (const constraints of [
    { node_id_pattern: '^(a+)+$x' },
    { node_id_pattern: '^fleet-(?=a).*$' },
    { node_id_pattern: '^(a)\\1$' },
    { node_id_pattern: 'fleet a' },
    { node_id_pattern: `^${'a'.repeat(300)}$` },
    { node_id_pattern: '^[unclosed$' },
    { allowed_labels: [] },
    { regions: ['bad region'] },
    { colour: 'blue' },
    'fleet-a-*',
  ]) {
    const res = await scopedPsk('bad', constraints);
    t.is(res.status, 400, JSON.stringify(constraints));
  }
});
