import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { parseBundle } from '../../src/policy/index.js';
import { tempDir } from '../helpers/config.js';
import { runCli } from '../helpers/gateway.js';

function policiesWith(files: Record<string, string>): string {
  const dir = tempDir('cynode-policies-');
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

const registerRego = [
  'package cynode.register',
  '',
  'decision := {"allow": allow, "reasons": []}',
  '',
  'default allow := false',
  '',
  'allow if input.subject.node_id == "n1"',
  '',
  'extra if input.never',
  '',
].join('\n');

test('policy build writes a Wasm bundle with the given revision', async (t) => {
  const out = join(tempDir(), 'b.tar.gz');
  const dispatchRego = 'package cynode.dispatch\n\ndecision := {"allow": false, "reasons": ["stub"], "score": 0}\n';
  const apiCallRego = 'package cynode.api_call\n\ndecision := {"allow": false, "reasons": ["stub"], "limits": {}}\n';
  const mcpRego = 'package cynode.mcp_tool_invoke\n\ndecision := {"allow": false, "reasons": ["stub"]}\n';
  const files = { 'r.rego': registerRego, 'd.rego': dispatchRego, 'a.rego': apiCallRego, 'm.rego': mcpRego };
  const { code, stderr } = await runCli(['policy', 'build', '--dir', policiesWith(files), '--out', out, '--revision', 'v7']);
  t.is(code, 0, stderr);
  t.regex(stderr, /revision v7/);
  const bundle = parseBundle(readFileSync(out));
  t.is(bundle.manifest.revision, 'v7');
  t.deepEqual(bundle.manifest.wasm.map((w) => w.entrypoint).sort(), [
    'cynode/api_call/decision',
    'cynode/dispatch/decision',
    'cynode/mcp_tool_invoke/decision',
    'cynode/register/decision',
  ]);
});

test("a broken Rego file fails the build with OPA's own error, no stack trace, no bundle", async (t) => {
  const dir = policiesWith({ 'r.rego': 'package cynode.register\n\ndecision := {"allow": \n' });
  const out = join(tempDir(), 'b.tar.gz');
  const { code, stderr } = await runCli(['policy', 'build', '--dir', dir, '--out', out]);
  t.not(code, 0);
  t.regex(stderr, /rego_parse_error/);
  t.regex(stderr, /r\.rego:\d+/);
  t.notRegex(stderr, /\n\s+at .*\(.*:\d+:\d+\)/);
  t.false(existsSync(out));
});

test('policy test runs opa test and enforces the coverage threshold', async (t) => {
  const tests =
    'package cynode.register_test\n\nimport data.cynode.register\n\ntest_n1 if register.allow with input as {"subject": {"node_id": "n1"}}\n';
  const dir = policiesWith({ 'r.rego': registerRego, 'r_test.rego': tests });

  const low = await runCli(['policy', 'test', '--dir', dir], { CYNODE_POLICY_COVERAGE_THRESHOLD: '100' });
  t.is(low.code, 1);
  t.regex(low.stderr, /coverage \d+\.\d% is below the 100% threshold/);
  t.regex(low.stdout, /PASS: 1\/1/);

  const ok = await runCli(['policy', 'test', '--dir', dir], { CYNODE_POLICY_COVERAGE_THRESHOLD: '30' });
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stderr, /policy coverage \d+\.\d% \(threshold 30%\)/);
});

test("a failing Rego test fails policy test with OPA's report", async (t) => {
  const tests =
    'package cynode.register_test\n\nimport data.cynode.register\n\ntest_wrong if register.allow with input as {"subject": {"node_id": "n2"}}\n';
  const { code, stdout } = await runCli(['policy', 'test', '--dir', policiesWith({ 'r.rego': registerRego, 'r_test.rego': tests })]);
  t.not(code, 0);
  t.regex(stdout, /test_wrong: FAIL/);
});

test('the shipped policies pass opa test with at least 90% coverage', async (t) => {
  const { code, stdout, stderr } = await runCli(['policy', 'test']);
  t.is(code, 0, stderr);
  t.regex(stdout, /PASS: \d+\/\d+/);
  const coverage = Number(/policy coverage (\d+\.\d)%/.exec(stderr)?.[1]);
  t.true(coverage >= 90, `coverage ${coverage}`);
});

test('unknown policy subcommands are usage errors', async (t) => {
  const { code, stderr } = await runCli(['policy', 'deploy']);
  t.is(code, 2);
  t.regex(stderr, /policy takes build, test, eval or replay/);
});
