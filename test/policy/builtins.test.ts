import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { loadPolicy } from '@open-policy-agent/opa-wasm';
import pino from 'pino';
import { packageRoot } from '../../src/lib/package-root.js';
import {
  BundleError,
  checkBuiltins,
  createPolicyEngine,
  hostBuiltinsOf,
  opaBinary,
  parseBundle,
  REQUIRED_ENTRYPOINTS,
  ToolchainError,
} from '../../src/policy/index.js';
import { buildCustomBundle, ensureBundle } from '../helpers/bundle.js';
import { tempDir } from '../helpers/config.js';

const sprintfPolicy = 'package cynode.register\n\ndecision := {"allow": false, "reasons": [sprintf("%v", [input.x])]}\n';

test("building a policy that needs an unsupported builtin fails with OPA's own error", async (t) => {
  const err = await t.throwsAsync(() => buildCustomBundle({ 'cynode/register/r.rego': sprintfPolicy }), { instanceOf: ToolchainError });
  t.regex(err.message, /opa build failed/);
});

test('a bundle built without the capabilities gate is refused at load, naming the builtin', async (t) => {
  const dir = tempDir();
  mkdirSync(join(dir, 'p', 'cynode', 'register'), { recursive: true });
  writeFileSync(join(dir, 'p', 'cynode', 'register', 'r.rego'), sprintfPolicy);
  const out = join(dir, 'b.tar.gz');
  execFileSync(opaBinary(), ['build', '-b', join(dir, 'p'), '-t', 'wasm', '-e', 'cynode/register/decision', '-r', 'no-caps', '-o', out]);
  const bundle = parseBundle(readFileSync(out));
  t.deepEqual(hostBuiltinsOf(await loadPolicy(bundle.wasm)), ['sprintf']);

  const engine = createPolicyEngine({ logger: pino({ level: 'silent' }), required: REQUIRED_ENTRYPOINTS, inspect: checkBuiltins });
  const refused = await t.throwsAsync(() => engine.activate(out, async () => readFileSync(out)), { instanceOf: BundleError });
  t.is(refused.code, 'builtin_not_supported');
  t.regex(refused.message, /sprintf/);
});

test('builtins the host implements faithfully are accepted', async (t) => {
  const yamlPolicy =
    'package cynode.register\n\ndecision := {"allow": false, "reasons": [yaml.marshal(input.x)]} if input.x\n\ndefault decision := {"allow": false, "reasons": []}\n';
  const out = await buildCustomBundle({ 'cynode/register/r.rego': yamlPolicy });
  const engine = createPolicyEngine({ logger: pino({ level: 'silent' }), required: REQUIRED_ENTRYPOINTS, inspect: checkBuiltins });
  await engine.activate(out, async () => readFileSync(out));
  t.deepEqual(engine.evaluate('cynode/register/decision', { x: { a: 1 } }).decision.reasons, ['a: 1\n']);
});

test('the shipped policies need no host builtin, and the capabilities file is what the generator writes', async (t) => {
  const bundle = parseBundle(readFileSync(await ensureBundle()));
  const policy = await loadPolicy(bundle.wasm);
  t.deepEqual(hostBuiltinsOf(policy), []);
  t.notThrows(() => checkBuiltins(policy));
  const caps = JSON.parse(readFileSync(join(packageRoot(), 'config', 'opa-capabilities.json'), 'utf8')) as { builtins: { name: string }[] };
  const names = new Set(caps.builtins.map((b) => b.name));
  for (const kept of ['eq', 'assign', 'count', 'startswith', 'object.get', 'internal.member_2', 'yaml.marshal'])
    t.true(names.has(kept), kept);
  for (const dropped of ['sprintf', 'regex.split', 'http.send', 'time.now_ns', 'rand.intn']) t.false(names.has(dropped), dropped);
});
