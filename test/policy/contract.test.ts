import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import pino from 'pino';
import { packageRoot } from '../../src/lib/package-root.js';
import { activateFromFile, createPolicyEngine, ENTRYPOINTS, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { ensureBundle } from '../helpers/bundle.js';

// docs/policy-input.md is the contract security teams read; these tests keep it true.
const doc = readFileSync(join(packageRoot(), 'docs', 'policy-input.md'), 'utf8');
const rego = readFileSync(join(packageRoot(), 'policies', 'cynode', 'register', 'register.rego'), 'utf8');

test('the documented register input is admitted by the shipped bundle', async (t) => {
  const example = /### `register`[\s\S]*?```json\n([\s\S]*?)```/.exec(doc)?.[1];
  t.truthy(example, 'the doc has a register example');
  const engine = createPolicyEngine({ logger: pino({ level: 'silent' }), required: REQUIRED_ENTRYPOINTS });
  await activateFromFile(engine, await ensureBundle());
  t.deepEqual(engine.evaluate(ENTRYPOINTS.register, JSON.parse(example!)).decision, { allow: true, reasons: [] });
});

test('the documented reason codes are exactly the ones the register policy can give', (t) => {
  const section = doc.slice(doc.indexOf('### Reason codes of `register`'));
  const documented = [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]).sort();
  const inPolicy = [...rego.matchAll(/deny contains "([a-z_]+)"/g)].map((m) => m[1]).sort();
  t.true(inPolicy.length > 0);
  t.deepEqual(documented, inPolicy);
});
