import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import pino from 'pino';
import { packageRoot } from '../../src/lib/package-root.js';
import { activateFromFile, createPolicyEngine, ENTRYPOINTS, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { ensureBundle } from '../helpers/bundle.js';

// docs/policy-input.md is the contract security teams read; these tests keep it true.
const doc = readFileSync(join(packageRoot(), 'docs', 'policy-input.md'), 'utf8');
/** Every policy file of a package (its rules may be split over several files), tests left out. */
const rego = (action: string) => {
  const dir = join(packageRoot(), 'policies', 'cynode', action);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.rego') && !f.endsWith('_test.rego'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('\n');
};
/** The part of the doc under a `### ` heading, up to the next heading. */
const section = (heading: string) => {
  const start = doc.indexOf(heading);
  const rest = doc.slice(start + heading.length);
  const end = rest.search(/^#{2,3} /m);
  return start < 0 ? '' : end < 0 ? rest : rest.slice(0, end);
};

test('the documented register input is admitted by the shipped bundle', async (t) => {
  const example = /### `register`[\s\S]*?```json\n([\s\S]*?)```/.exec(doc)?.[1];
  t.truthy(example, 'the doc has a register example');
  const engine = createPolicyEngine({ logger: pino({ level: 'silent' }), required: REQUIRED_ENTRYPOINTS });
  await activateFromFile(engine, await ensureBundle());
  t.deepEqual(engine.evaluate(ENTRYPOINTS.register, JSON.parse(example!)).decision, { allow: true, reasons: [] });
});

for (const action of ['register', 'dispatch', 'api_call', 'mcp_tool_invoke'] as const) {
  test(`the documented reason codes are exactly the ones the ${action} policy can give`, (t) => {
    const documented = [...section(`### Reason codes of \`${action.replaceAll('_', '.')}\``).matchAll(/^\| `([a-z_]+)` \|/gm)]
      .map((m) => m[1])
      .sort();
    const inPolicy = [...new Set([...rego(action).matchAll(/deny contains "([a-z_]+)"/g)].map((m) => m[1]))].sort();
    t.true(inPolicy.length > 0);
    t.deepEqual(documented, inPolicy);
  });
}

test('the documented dispatch input is allowed by the shipped bundle, with a score', async (t) => {
  const example = /```json\n([\s\S]*?)```/.exec(section('### `dispatch`'))?.[1];
  t.truthy(example, 'the doc has a dispatch example');
  const engine = createPolicyEngine({ logger: pino({ level: 'silent' }), required: REQUIRED_ENTRYPOINTS });
  await activateFromFile(engine, await ensureBundle());
  const { decision } = engine.evaluate(ENTRYPOINTS.dispatch, JSON.parse(example!));
  t.deepEqual(decision.reasons, []);
  t.true(decision.allow);
  t.is(decision.score, 100 - 30 * (1 / 4));
});

test("the documented api.call input is the README's Example 1 and is allowed, with its limits", async (t) => {
  const example = /```json\n([\s\S]*?)```/.exec(section('### `api.call`'))?.[1];
  t.truthy(example, 'the doc has an api.call example');
  const engine = createPolicyEngine({ logger: pino({ level: 'silent' }), required: REQUIRED_ENTRYPOINTS });
  await activateFromFile(engine, await ensureBundle());
  const input = JSON.parse(example!) as { resource: Record<string, unknown> };
  const { decision } = engine.evaluate(ENTRYPOINTS.apiCall, input);
  t.deepEqual(decision.reasons, []);
  t.true(decision.allow);
  t.deepEqual((decision as unknown as { limits: unknown }).limits, {
    subject: { rpm: 300, tpm: 2_000_000 },
    credential: { rpm: 30_000, tpm: 150_000_000 },
  });
  const anthropic = engine.evaluate(ENTRYPOINTS.apiCall, {
    ...input,
    resource: { ...input.resource, provider: 'anthropic', operation: 'messages', model: 'claude-3-5-haiku-latest' },
  });
  t.false(anthropic.decision.allow, 'Example 1 grants OpenAI only');
});

test('the documented mcp.tool.invoke input is allowed by the shipped bundle', async (t) => {
  const example = /```json\n([\s\S]*?)```/.exec(section('### `mcp.tool.invoke`'))?.[1];
  t.truthy(example, 'the doc has an mcp.tool.invoke example');
  const engine = createPolicyEngine({ logger: pino({ level: 'silent' }), required: REQUIRED_ENTRYPOINTS });
  await activateFromFile(engine, await ensureBundle());
  t.deepEqual(engine.evaluate(ENTRYPOINTS.mcpToolInvoke, JSON.parse(example!)).decision, { allow: true, reasons: [] });
});
