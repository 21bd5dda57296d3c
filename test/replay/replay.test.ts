import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import pino from 'pino';
import { packageRoot } from '../../src/lib/package-root.js';
import { buildBundle, createPolicyEngine, type Decision, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import type { EntrypointReport, ReplayReport } from '../../src/replay/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { buildCustomBundle } from '../helpers/bundle.js';
import { tempDir } from '../helpers/config.js';
import { runCli } from '../helpers/gateway.js';
import { call } from '../helpers/http.js';

// Ten thousand decisions are made through the gateway's own decision service (real policies,
// real decision log), a few more through POST /v1/data, then replayed against a stricter
// candidate built by `opa build`. The counts must equal a direct evaluation of the same inputs
// on a separate engine; decisions recorded with masked fields are counted apart.

const READER = 'test-reader-token-0123456789abcdef';
const BUNDLE_READER = 'test-bundle-reader-0123456789abcdef';
const REGISTER = 'cynode/register/decision';
const DECISIONS = 10_000;
const dir = tempDir('cynode-replay-');

// Stricter on regions (us-west-2 is no longer allowed) and on modes, blind to labels and
// providers (so some denials become allows), and with its own deny reason.
const CANDIDATE_REGO = `package cynode.register

decision := {"allow": allow, "reasons": reasons}

default allow := false

allow if {
	is_string(input.subject.node_id)
	input.subject.region in {"us-east-1", "eu-west-1"}
	input.subject.inference_mode == "provider_api"
}

reasons := [] if allow

reasons := ["candidate_denied"] if not allow
`;

const REGIONS = ['us-east-1', 'us-west-2', 'eu-west-1', 'mars-1'];
const LABELS = [['cloud'], ['cloud', 'gpu'], ['cloud', 'quantum']];
const MODES = ['provider_api', 'ollama_remote'];

/** A varied capability report: every 7th names its cloud, a field the log masks. */
function inputOf(i: number): Record<string, unknown> {
  return {
    action: 'register',
    subject: {
      node_id: `replay-node-${i}`,
      labels: LABELS[i % LABELS.length],
      region: REGIONS[Math.floor(i / 3) % REGIONS.length],
      inference_mode: MODES[Math.floor(i / 12) % MODES.length],
      supported_providers: i % 5 === 0 ? ['openai', 'mystery'] : ['openai'],
      ...(i % 7 === 0 && { provider: 'aws' }),
    },
  };
}

let gw: BootedGateway;
let candidate: Buffer;
let candidatePath: string;
const inputs: Record<string, unknown>[] = [];
const recorded: Decision[] = [];

test.before(async () => {
  const trusted = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keysFile = join(dir, 'keys.json');
  const trustedPem = trusted.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  writeFileSync(keysFile, JSON.stringify({ keys: { trusted: { algorithm: 'ES256', key: trustedPem } } }));
  candidatePath = await buildCustomBundle({ 'cynode/register/register.rego': CANDIDATE_REGO }, { revision: 'candidate-1' });
  candidate = readFileSync(candidatePath);
  gw = await bootGateway({
    roles: ['control'],
    env: {
      CYNODE_READER_TOKEN: READER,
      CYNODE_BUNDLE_SERVICE_TOKEN: BUNDLE_READER,
      CYNODE_DECISION_LOG_MASK_PATHS: '/subject/provider',
      // Unsigned bundles are allowed, but a signature that is present must verify against these keys.
      CYNODE_BUNDLE_VERIFICATION_KEYS_FILE: keysFile,
    },
  });
  for (let i = 0; i < DECISIONS; i++) {
    inputs.push(inputOf(i));
    recorded.push((await gw.gateway.decisions.decide(REGISTER, inputs[i], 'replay-test')).decision);
  }
  for (let i = DECISIONS; i < DECISIONS + 5; i++) {
    inputs.push(inputOf(i));
    const answer = await call<{ result: Decision }>(gw.url(), `/v1/data/${REGISTER}`, { json: { input: inputs[i] } });
    recorded.push(answer.body.result);
  }
  await gw.gateway.decisionLog.flush();
});
test.after.always(async () => {
  await gw?.stop();
});

/** The counts a replay must report, from evaluating every input directly on the candidate. */
async function expectedCounts(): Promise<Omit<EntrypointReport, 'samples'>> {
  const engine = createPolicyEngine({ logger: pino({ level: 'silent' }), required: REQUIRED_ENTRYPOINTS });
  await engine.activate('expected', () => Promise.resolve(candidate));
  const counts = { evaluated: 0, unchanged: 0, allow_to_deny: 0, deny_to_allow: 0, reasons_changed: 0, masked: 0, errors: 0 };
  inputs.forEach((input, i) => {
    counts.evaluated++;
    if ('provider' in (input.subject as object)) return void counts.masked++;
    const before = recorded[i]!;
    const after = engine.evaluate(REGISTER, input).decision;
    if (before.allow !== after.allow) return void counts[before.allow ? 'allow_to_deny' : 'deny_to_allow']++;
    const same = JSON.stringify([...before.reasons].sort()) === JSON.stringify([...after.reasons].sort());
    counts[same ? 'unchanged' : 'reasons_changed']++;
  });
  return counts;
}

const replay = (query = '', options: { token?: string | null; body?: Buffer; type?: string } = {}) =>
  call<ReplayReport & { error?: { code: string } }>(gw.url(), `/v1/policy/replay${query}`, {
    body: options.body ?? candidate,
    headers: { 'content-type': options.type ?? 'application/gzip' },
    token: options.token === undefined ? READER : options.token,
  });

const countsOf = ({ samples: _samples, ...counts }: ReplayReport['entrypoints'][string]) => counts;

test.serial('a replay of 10,000 recorded decisions reports exact counts, in under 10 s, and records nothing', async (t) => {
  const rowsBefore = Number((await gw.gateway.db.knex('decision_log').count({ n: '*' }))[0]!.n);
  const started = performance.now();
  const answer = await replay('?since=1h');
  const elapsedMs = performance.now() - started;
  t.is(answer.status, 200, JSON.stringify(answer.body));
  t.log(`replayed ${answer.body.total} decisions in ${Math.round(elapsedMs)} ms`);
  t.true(elapsedMs < 10_000, `${elapsedMs} ms`);
  t.deepEqual(answer.body.candidate, { revision: 'candidate-1', digest: answer.body.candidate.digest });
  t.is(answer.body.total, DECISIONS + 5);
  const expected = await expectedCounts();
  t.deepEqual(countsOf(answer.body.entrypoints[REGISTER]!), expected);
  t.true(expected.allow_to_deny > 0 && expected.deny_to_allow > 0 && expected.reasons_changed > 0 && expected.unchanged > 0);
  t.deepEqual(Object.keys(answer.body.entrypoints), [REGISTER]);

  const { samples } = answer.body.entrypoints[REGISTER]!;
  t.is(samples.length, 20);
  const rows = (await gw.gateway.db
    .knex('decision_log')
    .whereIn(
      'decision_id',
      samples.map((s) => s.decision_id),
    )
    .select('decision_id', 'input')) as { decision_id: string; input: { subject: { node_id: string } } }[];
  for (const s of samples) {
    const nodeId = rows.find((r) => r.decision_id === s.decision_id)!.input.subject.node_id;
    const i = Number(nodeId.slice('replay-node-'.length));
    t.false('provider' in (inputs[i]!.subject as object), 'a masked decision is never a sample');
    t.deepEqual(s.before, { allow: recorded[i]!.allow, reasons: recorded[i]!.reasons });
  }

  const rowsAfter = Number((await gw.gateway.db.knex('decision_log').count({ n: '*' }))[0]!.n);
  t.is(rowsAfter, rowsBefore, 'replaying writes no decision');
  t.is(gw.gateway.policy.status().active?.revision, 'test-suite', 'the active engine is untouched');
});

test.serial('masked decisions are counted apart, not compared', async (t) => {
  const answer = await replay();
  const masked = inputs.filter((input) => 'provider' in (input.subject as object)).length;
  t.is(answer.body.entrypoints[REGISTER]!.masked, masked);
  t.true(masked > 1000);
});

test.serial('since, entrypoint and limit narrow the window', async (t) => {
  const limited = await replay(`?limit=100&entrypoint=${REGISTER}`);
  t.is(limited.status, 200);
  t.is(limited.body.total, 100);
  t.is(limited.body.entrypoints[REGISTER]!.evaluated, 100);
  const future = await replay(`?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`);
  t.is(future.body.total, 0);
  t.deepEqual(future.body.entrypoints, {});
  t.is((await replay('?entrypoint=cynode/nothing/decision')).body.error?.code, 'entrypoint_unknown');
  t.is((await replay('?since=yesterday')).status, 400);
  t.is((await replay('?limit=0')).status, 400);
});

test.serial('the reader token may replay; the bundle reader token and no token may not', async (t) => {
  t.is((await replay('?limit=1', { token: READER })).status, 200);
  t.is((await replay('?limit=1', { token: gw.adminToken })).status, 200);
  t.is((await replay('?limit=1', { token: BUNDLE_READER })).status, 403);
  t.is((await replay('?limit=1', { token: null })).status, 401);
});

test.serial('a candidate the gateway would not activate is refused with its bundle error code', async (t) => {
  const garbage = await replay('', { body: Buffer.from('not a bundle') });
  t.is(garbage.status, 422);
  t.is(garbage.body.error?.code, 'bundle_malformed');
  const json = await replay('', { body: Buffer.from('{"input": {}}'), type: 'application/json' });
  t.is(json.status, 415);
  t.is(json.body.error?.code, 'unsupported_media_type');

  const rogue = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyFile = join(dir, 'rogue.pem');
  writeFileSync(keyFile, rogue.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const out = join(dir, 'rogue.tar.gz');
  await buildBundle({
    policiesDir: join(packageRoot(), 'policies'),
    out,
    entrypoints: REQUIRED_ENTRYPOINTS,
    revision: 'rogue',
    signing: { keyFile, algorithm: 'ES256', keyId: 'trusted' },
  });
  const signed = await replay('', { body: readFileSync(out) });
  t.is(signed.status, 422);
  t.is(signed.body.error?.code, 'signature_invalid');

  const allowAll = await buildCustomBundle({
    'cynode/register/r.rego': 'package cynode.register\n\ndecision := {"allow": true, "reasons": []}\n',
  });
  const open = await replay('', { body: readFileSync(allowAll) });
  t.is(open.body.error?.code, 'bundle_not_default_deny');
});

const cliEnv = () => ({ DATABASE_URL: gw.db!.url, CYNODE_POLICY_ALLOW_UNSIGNED: 'true', CYNODE_LOG_LEVEL: 'silent' });

test.serial('policy replay on the database matches the API answer; --max-flips gates the exit code', async (t) => {
  const api = await replay();
  const flips = api.body.entrypoints[REGISTER]!.allow_to_deny + api.body.entrypoints[REGISTER]!.deny_to_allow;

  const json = await runCli(['policy', 'replay', '--bundle', candidatePath, '--json', '--max-flips', String(flips)], cliEnv());
  t.is(json.code, 0, json.stderr);
  const local = JSON.parse(json.stdout) as ReplayReport;
  t.deepEqual(countsOf(local.entrypoints[REGISTER]!), countsOf(api.body.entrypoints[REGISTER]!));
  t.regex(json.stderr, /decisions had masked input fields .* were not compared/);

  const gated = await runCli(['policy', 'replay', '--bundle', candidatePath, '--max-flips', String(flips - 1)], cliEnv());
  t.is(gated.code, 1);
  t.regex(gated.stderr, new RegExp(`${flips} decisions flip, more than --max-flips ${flips - 1}`));
  t.regex(gated.stdout, /cynode\/register\/decision\s+10005/);
});

test.serial('policy replay --url asks the gateway with the reader token', async (t) => {
  const env = { ...cliEnv(), CYNODE_READER_TOKEN: READER };
  const remote = await runCli(['policy', 'replay', '--bundle', candidatePath, '--url', gw.url(), '--json', '--limit', '50'], env);
  t.is(remote.code, 0, remote.stderr);
  t.is((JSON.parse(remote.stdout) as ReplayReport).total, 50);
  const refused = await runCli(['policy', 'replay', '--bundle', candidatePath, '--url', gw.url()], {
    ...env,
    CYNODE_READER_TOKEN: BUNDLE_READER,
  });
  t.is(refused.code, 1);
  t.regex(refused.stderr, /forbidden/);
});

test.serial('policy replay refuses an unsigned candidate where signatures are required', async (t) => {
  const env = { ...cliEnv(), CYNODE_POLICY_ALLOW_UNSIGNED: 'false', CYNODE_BUNDLE_VERIFICATION_KEYS_FILE: join(dir, 'keys.json') };
  const { code, stderr } = await runCli(['policy', 'replay', '--bundle', candidatePath], env);
  t.is(code, 1);
  t.regex(stderr, /candidate refused \(signature_missing\)/);
  const usage = await runCli(['policy', 'replay', '--bundle', candidatePath, '--since', 'soon'], cliEnv());
  t.is(usage.code, 2);
});
