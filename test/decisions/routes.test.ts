import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call } from '../helpers/http.js';
import { SEED_WORKER } from '../helpers/fixtures.js';

let gw: BootedGateway;
let base: string;

const seedWorker = { ...SEED_WORKER, psk: 'psk_never_stored_0123' };
const PATH = '/v1/data/cynode/register/decision';

test.before(async () => {
  gw = await bootGateway({ env: { CYNODE_BUNDLE_SERVICE_TOKEN: 'bundle-reader-token-0123456789' } });
  base = gw.url();
});
test.after.always(() => gw?.stop());

type DataAnswer = { result: { allow: boolean; reasons: string[] }; decision_id: string };

test('POST /v1/data/{entrypoint} decides and answers {result, decision_id}', async (t) => {
  const allowed = await call<DataAnswer>(base, PATH, { json: { input: { action: 'register', subject: seedWorker } } });
  t.is(allowed.status, 200);
  t.deepEqual(allowed.body.result, { allow: true, reasons: [] });
  t.regex(allowed.body.decision_id, /^[0-9a-f-]{36}$/);

  const denied = await call<DataAnswer>(base, PATH, { json: { input: { subject: { ...seedWorker, region: 'mars-1' } } } });
  t.deepEqual(denied.body.result, { allow: false, reasons: ['region_not_allowed'] });
});

test('every decision is recorded in OPA decision-log shape with masked input', async (t) => {
  const made = await call<DataAnswer>(base, PATH, { json: { input: { action: 'register', subject: seedWorker } } });
  const logged = await call<Record<string, any>>(base, `/v1/decisions/${made.body.decision_id}`);
  t.is(logged.status, 200);
  t.is(logged.body.decision_id, made.body.decision_id);
  t.is(logged.body.path, 'cynode/register/decision');
  t.deepEqual(logged.body.result, made.body.result);
  t.deepEqual(logged.body.bundles, { cynode: { revision: 'test-suite' } });
  t.is(logged.body.input.subject.psk, '[MASKED]');
  t.deepEqual(logged.body.erased, ['/subject/psk']);
  t.is(logged.body.requested_by, 'admin');
  t.true(Number(logged.body.metrics.timer_rego_query_eval_ns) > 0);
  t.false(JSON.stringify(logged.body).includes(seedWorker.psk));
  t.is((await call(base, '/v1/decisions/00000000-0000-4000-8000-000000000000')).status, 404);
  t.is((await call(base, '/v1/decisions/not-a-uuid')).status, 404);
});

test('the decision API refuses bad requests with stable codes', async (t) => {
  const code = async (p: Promise<{ status: number; body: any }>) => {
    const r = await p;
    return [r.status, r.body.error?.code];
  };
  t.deepEqual(await code(call(base, PATH, { json: { input: {} }, token: null })), [401, 'unauthorized']);
  t.deepEqual(await code(call(base, PATH, { json: { input: {} }, token: 'wrong-token-0123456789' })), [401, 'unauthorized']);
  t.deepEqual(await code(call(base, PATH, { json: { input: {} }, token: 'bundle-reader-token-0123456789' })), [403, 'forbidden']);
  t.deepEqual(await code(call(base, '/v1/data/cynode/secret/rule', { json: { input: {} } })), [404, 'entrypoint_unknown']);
  t.deepEqual(await code(call(base, PATH, { body: '{"input": ', headers: { 'content-type': 'application/json' } })), [400, 'invalid_json']);
  t.deepEqual(await code(call(base, PATH, { body: 'input=1', headers: { 'content-type': 'text/plain' } })), [
    415,
    'unsupported_media_type',
  ]);
  t.deepEqual(await code(call(base, PATH, { json: { notInput: 1 } })), [400, 'bad_request']);
  t.deepEqual(await code(call(base, PATH, { json: [1, 2] })), [400, 'bad_request']);
  const huge = JSON.stringify({ input: { blob: 'x'.repeat(1_100_000) } });
  t.deepEqual(await code(call(base, PATH, { body: huge, headers: { 'content-type': 'application/json' } })), [413, 'payload_too_large']);
  // A malformed input is still a decision: a clear deny, recorded.
  const odd = await call<DataAnswer>(base, PATH, { json: { input: 'just a string' } });
  t.deepEqual(odd.body.result, { allow: false, reasons: ['context_missing'] });
});

test('admin surfaces need the admin token; health and metrics do not', async (t) => {
  for (const path of ['/v1/status', '/v1/settings/cloud_routing.enabled', '/v1/decisions/00000000-0000-4000-8000-000000000000']) {
    t.is((await call(base, path, { token: null })).status, 401, path);
  }
  t.is((await call(base, '/healthz', { token: null })).status, 200);
  t.is((await call(base, '/metrics', { token: null })).status, 200);
});

test('status reports the active bundle, last success and last error', async (t) => {
  const status = await call<Record<string, any>>(base, '/v1/status');
  t.is(status.status, 200);
  const b = status.body.bundles.cynode;
  t.is(b.active.revision, 'test-suite');
  t.regex(b.active.digest, /^[0-9a-f]{64}$/);
  t.deepEqual(b.active.entrypoints, [
    'cynode/api_call/decision',
    'cynode/dispatch/decision',
    'cynode/mcp_tool_invoke/decision',
    'cynode/register/decision',
  ]);
  t.truthy(Date.parse(b.lastSuccessAt));
  t.is(b.lastError, null);
  t.is(status.body.database.kind, 'postgres');
  t.false(JSON.stringify(status.body).includes('test-admin-token'));
});

test('metrics report the active revision, its activation time and decisions by result', async (t) => {
  await call(base, PATH, { json: { input: { subject: seedWorker } } });
  const text = (await call<string>(base, '/metrics', { token: null })).body;
  t.regex(text, /cynode_bundle_info\{bundle="cynode",revision="test-suite",digest="[0-9a-f]{64}"\} 1/);
  t.regex(text, /cynode_bundle_activated_timestamp_seconds\{bundle="cynode"\} \d+/);
  t.regex(text, /cynode_decisions_total\{entrypoint="cynode\/register\/decision",result="allow"\} [1-9]/);
  t.regex(text, /cynode_policy_eval_seconds_bucket/);
  t.regex(text, /cynode_decision_log_pending \d+/);
});
