import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import pino from 'pino';
import { packageRoot } from '../../src/lib/package-root.js';
import { canonicalJson } from '../../src/lib/canonical-json.js';
import { activateFromFile, createPolicyEngine, opaBinary, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { ensureBundle } from '../helpers/bundle.js';
import { tempDir } from '../helpers/config.js';
import { GENERATORS, seeded } from '../helpers/inputs/index.js';

const run = promisify(execFile);
const COUNT = 10_000;

/** The same Rego and data, evaluated by OPA's own topdown engine for every input in one process. */
async function opaEval(entrypoint: string, inputs: unknown[]): Promise<Record<string, unknown>> {
  const dir = tempDir('cynode-eq-');
  const inputsFile = join(dir, 'inputs.json');
  writeFileSync(inputsFile, JSON.stringify({ eq_inputs: inputs }));
  const ref = `data.${entrypoint.split('/').join('.')}`;
  const query = `{i: d | x := data.eq_inputs[i]; d := ${ref} with input as x}`;
  const { stdout } = await run(
    opaBinary(),
    ['eval', '-f', 'json', '-b', join(packageRoot(), 'policies'), '--ignore', '*_test.rego', '-d', inputsFile, query],
    { maxBuffer: 512 << 20 },
  );
  const out = JSON.parse(stdout) as { result: { expressions: { value: Record<string, unknown> }[] }[] };
  return out.result[0]!.expressions[0]!.value;
}

for (const entrypoint of REQUIRED_ENTRYPOINTS) {
  test(`${entrypoint}: Wasm and opa eval agree on ${COUNT} generated inputs`, async (t) => {
    const generate = GENERATORS[entrypoint];
    const r = seeded(0xc0ffee);
    const inputs = Array.from({ length: COUNT }, () => generate(r));
    const engine = createPolicyEngine({ logger: pino({ level: 'silent' }), required: REQUIRED_ENTRYPOINTS });
    await activateFromFile(engine, await ensureBundle());
    const expected = await opaEval(entrypoint, inputs);

    const differences: { i: number; input: unknown; wasm: unknown; opa: unknown }[] = [];
    const outcomes = new Map<string, number>();
    inputs.forEach((input, i) => {
      let wasm: unknown;
      try {
        wasm = engine.evaluate(entrypoint, input).decision;
      } catch {
        wasm = undefined; // undefined or malformed: the gateway fails closed
      }
      const opa = expected[String(i)];
      // Objects compare by content, not key order (opa eval sorts keys; Wasm keeps the rule's order).
      if (canonicalJson(wasm ?? null) !== canonicalJson(opa ?? null)) differences.push({ i, input, wasm, opa });
      const key = wasm === undefined ? 'undefined' : (wasm as { allow: boolean }).allow ? 'allow' : 'deny';
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    });
    t.log(`evaluated ${COUNT}: ${[...outcomes].map(([k, v]) => `${k} ${v}`).join(', ')}; differences ${differences.length}`);
    if (differences.length > 0) t.log(JSON.stringify(differences.slice(0, 3), null, 1));
    t.is(differences.length, 0);
    t.true((outcomes.get('allow') ?? 0) > COUNT * 0.05, 'the inputs reach allow as well as deny');
    t.true((outcomes.get('deny') ?? 0) > COUNT * 0.3);
  });
}
