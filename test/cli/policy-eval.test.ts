import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { buildCustomBundle } from '../helpers/bundle.js';
import { tempDir } from '../helpers/config.js';
import { runCli } from '../helpers/gateway.js';
import { call } from '../helpers/http.js';

// `policy eval` decides locally on the engine the gateway runs; for the same input it prints
// what POST /v1/data answers, less the decision_id (a local evaluation records nothing).

let gw: BootedGateway;
test.before(async () => {
  gw = await bootGateway({ roles: ['control'] });
});
test.after.always(async () => {
  await gw?.stop();
});

const REPORT = {
  node_id: 'eval-node-1',
  labels: ['cloud'],
  region: 'us-east-1',
  inference_mode: 'provider_api',
  supported_providers: ['openai'],
};
const CASES: [string, unknown][] = [
  ['cynode/register/decision', { action: 'register', subject: REPORT }],
  ['cynode/register/decision', { action: 'register', subject: { ...REPORT, region: 'mars-1' } }],
  ['cynode/dispatch/decision', { action: 'dispatch' }],
  ['cynode/api_call/decision', {}],
];
const env = () => ({ CYNODE_BUNDLE: gw.config.policy.bundle, CYNODE_POLICY_ALLOW_UNSIGNED: 'true', CYNODE_LOG_LEVEL: 'silent' });

for (const [i, [entrypoint, input]] of CASES.entries()) {
  test(`policy eval prints what /v1/data answers (${entrypoint} #${i})`, async (t) => {
    const served = await call<{ result: unknown; decision_id: string }>(gw.url(), `/v1/data/${entrypoint}`, { json: { input } });
    t.is(served.status, 200);
    const local = await runCli(['policy', 'eval', '--entrypoint', entrypoint], env(), JSON.stringify(input));
    t.is(local.code, 0, local.stderr);
    const { decision_id: _id, ...answer } = served.body;
    t.deepEqual(JSON.parse(local.stdout), answer);
  });
}

test('policy eval reads --input FILE and --bundle FILE', async (t) => {
  const file = join(tempDir(), 'input.json');
  writeFileSync(file, JSON.stringify({ subject: REPORT }));
  const bundle = await buildCustomBundle({
    'cynode/register/r.rego':
      'package cynode.register\n\ndefault allow := false\n\nallow if input.subject.region == "us-east-1"\n\ndecision := {"allow": allow, "reasons": ["custom"]}\n',
  });
  const { code, stdout, stderr } = await runCli(
    ['policy', 'eval', '--entrypoint', 'cynode/register/decision', '--input', file, '--bundle', bundle],
    env(),
  );
  t.is(code, 0, stderr);
  t.deepEqual(JSON.parse(stdout), { result: { allow: true, reasons: ['custom'] } });
});

test('policy eval refuses an unknown entrypoint, bad JSON and a missing --entrypoint as usage errors', async (t) => {
  const unknown = await runCli(['policy', 'eval', '--entrypoint', 'cynode/nothing/decision'], env(), '{}');
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /not an entrypoint of bundle/);
  const bad = await runCli(['policy', 'eval', '--entrypoint', 'cynode/register/decision'], env(), '{"input":');
  t.is(bad.code, 2);
  t.regex(bad.stderr, /not usable JSON/);
  t.is((await runCli(['policy', 'eval'], env())).code, 2);
});
