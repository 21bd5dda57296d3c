import test from 'ava';
import pino from 'pino';
import { MASKED } from '../../src/decisions/index.js';
import { storableInput } from '../../src/decisions/mask.js';
import { canonicalJson } from '../../src/lib/canonical-json.js';
import { activateFromFile, createPolicyEngine, REQUIRED_ENTRYPOINTS } from '../../src/policy/index.js';
import { ensureBundle } from '../helpers/bundle.js';
import { GENERATORS, seeded } from '../helpers/inputs/index.js';

test('the stored text is the canonical JSON of the masked input, and exact only when it is the input itself', (t) => {
  const input = { subject: { id: 'w1', psk: 'secret' }, context: { at: 'now' } };
  const plain = storableInput({ context: { at: 'now' }, list: [1, 'a', null] }, ['/subject/psk']);
  t.true(plain.exact);
  t.deepEqual(JSON.parse(plain.json), { context: { at: 'now' }, list: [1, 'a', null] });

  const masked = storableInput(input, ['/subject/psk']);
  t.false(masked.exact, 'masked: the text is not what the policy must see');
  t.is(masked.json, canonicalJson({ subject: { id: 'w1', psk: MASKED }, context: { at: 'now' } }));
  t.is(input.subject.psk, 'secret', "the caller's input is not changed");
  t.is((masked.input as typeof input).context, input.context, 'what no mask touches is shared, not copied');

  t.false(storableInput({ at: new Date(0) }, []).exact, 'a Date is {} in canonical JSON but a string to JSON.stringify');
  t.false(storableInput({ list: [undefined] }, []).exact);
  t.false(storableInput({ n: Infinity }, []).exact);
  t.false(storableInput({ f: () => 1 }, []).exact);
  const nul = storableInput({ note: 'a\u0000b' }, []);
  t.false(nul.exact);
  t.is(nul.json, '{"note":"a\uFFFDb"}');
  t.false(storableInput('a string', []).exact, 'only an object input is handed over as text');
});

test('evaluating from the stored text decides exactly as evaluating the input', async (t) => {
  const engine = createPolicyEngine({ logger: pino({ level: 'silent' }), required: REQUIRED_ENTRYPOINTS });
  await activateFromFile(engine, await ensureBundle());
  const evaluate = (entrypoint: string, input: unknown, json?: string) => {
    try {
      return engine.evaluate(entrypoint, input, json).decision;
    } catch (err) {
      return { failed: (err as Error).message };
    }
  };
  let exact = 0;
  for (const entrypoint of REQUIRED_ENTRYPOINTS) {
    const r = seeded(99);
    for (let i = 0; i < 300; i++) {
      const input = GENERATORS[entrypoint](r); // some odd on purpose: strings, NUL, wrong types
      const stored = storableInput(input, []);
      if (!stored.exact) continue;
      exact++;
      t.deepEqual(evaluate(entrypoint, input, stored.json), evaluate(entrypoint, input));
    }
  }
  t.true(exact > 600, `${exact} of 1200 inputs were handed over as text`);
});
