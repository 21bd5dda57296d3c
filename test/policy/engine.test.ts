import { readFile } from 'node:fs/promises';
import test from 'ava';
import pino from 'pino';
import { activateFromFile, BundleError, createPolicyEngine, ENTRYPOINTS, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { buildCustomBundle, ensureBundle } from '../helpers/bundle.js';
import { SEED_WORKER } from '../helpers/fixtures.js';

const logger = pino({ level: 'silent' });
const newEngine = () => createPolicyEngine({ logger, required: REQUIRED_ENTRYPOINTS });

const seedWorker = SEED_WORKER;

const register = (subject: unknown) => ({ action: 'register', subject, resource: {}, context: {} });

let realBundle: string;
test.before(async () => {
  realBundle = await ensureBundle();
});

test('the real bundle activates and decides register admissions', async (t) => {
  const engine = newEngine();
  const info = await activateFromFile(engine, realBundle);
  t.is(info.revision, 'test-suite');
  t.regex(info.digest, /^[0-9a-f]{64}$/);
  t.deepEqual(info.entrypoints, [...REQUIRED_ENTRYPOINTS].sort());

  const ok = engine.evaluate(ENTRYPOINTS.register, register(seedWorker));
  t.deepEqual(ok, { decision: { allow: true, reasons: [] }, revision: 'test-suite' });

  const bad = engine.evaluate(ENTRYPOINTS.register, register({ ...seedWorker, region: 'ap-south-1', labels: ['cloud', 'root'] }));
  t.deepEqual(bad.decision, { allow: false, reasons: ['label_not_allowed', 'region_not_allowed'] });
});

test('no bundle: evaluation fails closed with bundle_unavailable', (t) => {
  const engine = newEngine();
  const err = t.throws(() => engine.evaluate(ENTRYPOINTS.register, register(seedWorker)));
  t.is((err as unknown as { code: string }).code, 'bundle_unavailable');
  t.is(engine.status().active, undefined);
});

test('a missing file is refused as bundle_unreadable and recorded in status', async (t) => {
  const engine = newEngine();
  const err = await t.throwsAsync(() => activateFromFile(engine, '/nonexistent/bundle.tar.gz'), { instanceOf: BundleError });
  t.is(err.code, 'bundle_unreadable');
  t.regex(err.message, /ENOENT.*policy build/);
  t.is(engine.status().lastError?.code, 'bundle_unreadable');
});

test('a bad new bundle leaves the last good one active', async (t) => {
  const engine = newEngine();
  await activateFromFile(engine, realBundle);
  const bytes = await readFile(realBundle);
  const truncated = bytes.subarray(0, bytes.length - 100);
  const err = await t.throwsAsync(() => engine.activate('truncated', async () => truncated), { instanceOf: BundleError });
  t.is(err.code, 'bundle_malformed');
  const status = engine.status();
  t.is(status.active?.revision, 'test-suite');
  t.is(status.lastError?.code, 'bundle_malformed');
  t.is(status.lastError?.source, 'truncated');
  t.true(engine.evaluate(ENTRYPOINTS.register, register(seedWorker)).decision.allow);
});

test('a bundle without a required entrypoint is refused', async (t) => {
  const other = await buildCustomBundle(
    { 'x/x.rego': 'package x\n\ndecision := {"allow": false, "reasons": []}\n' },
    { entrypoints: ['x/decision'] },
  );
  const err = await t.throwsAsync(() => activateFromFile(newEngine(), other), { instanceOf: BundleError });
  t.is(err.code, 'entrypoint_missing');
  t.regex(err.message, /cynode\/register\/decision/);
});

test('a bundle that allows the empty request is refused as not default-deny', async (t) => {
  const allowAll = await buildCustomBundle({
    'cynode/register/r.rego': 'package cynode.register\n\ndecision := {"allow": true, "reasons": []}\n',
  });
  const err = await t.throwsAsync(() => activateFromFile(newEngine(), allowAll), { instanceOf: BundleError });
  t.is(err.code, 'bundle_not_default_deny');
});

test('a bundle whose entrypoint is undefined on the empty request is refused', async (t) => {
  const partial = await buildCustomBundle({
    'cynode/register/r.rego': 'package cynode.register\n\ndecision := {"allow": false, "reasons": []} if input.subject\n',
  });
  const err = await t.throwsAsync(() => activateFromFile(newEngine(), partial), { instanceOf: BundleError });
  t.is(err.code, 'wasm_invalid');
  t.regex(err.message, /undefined/);
});

test('undefined and malformed results are errors, never an allow', async (t) => {
  const tricky = await buildCustomBundle({
    'cynode/register/r.rego': [
      'package cynode.register',
      '',
      'default decision := {"allow": false, "reasons": ["default"]}',
      '',
      'decision := {"allow": true} if input.mode == "no_reasons"',
      '',
      'decision := {"allow": "yes", "reasons": []} if input.mode == "string_allow"',
      '',
      'decision := true if input.mode == "bare_bool"',
      '',
    ].join('\n'),
  });
  const engine = newEngine();
  await activateFromFile(engine, tricky);
  t.deepEqual(engine.evaluate(ENTRYPOINTS.register, {}).decision, { allow: false, reasons: ['default'] });
  for (const mode of ['no_reasons', 'string_allow', 'bare_bool']) {
    const err = t.throws(() => engine.evaluate(ENTRYPOINTS.register, { mode }));
    t.is((err as unknown as { code: string }).code, 'policy_evaluation_failed', mode);
    t.regex(err!.message, /malformed/);
  }
});

test('data files go into the bundle and drive the decision', async (t) => {
  const withData = await buildCustomBundle({
    'cynode/register/r.rego': [
      'package cynode.register',
      '',
      'decision := {"allow": allow, "reasons": []}',
      '',
      'default allow := false',
      '',
      'allow if data.config.register.nodes[input.subject.node_id]',
      '',
    ].join('\n'),
    'config/register/data.yaml': 'nodes:\n  n1: true\n',
    'config/register/extra/data.json': '{"unused": [1, 2]}',
  });
  const engine = newEngine();
  await activateFromFile(engine, withData);
  t.true(engine.evaluate(ENTRYPOINTS.register, { subject: { node_id: 'n1' } }).decision.allow);
  t.false(engine.evaluate(ENTRYPOINTS.register, { subject: { node_id: 'n2' } }).decision.allow);
});
