import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import test from 'ava';
import pino from 'pino';
import type { DecisionEvent } from '../../src/decisions/log.js';
import { loadCandidate, MAX_SAMPLES, replayBatches } from '../../src/replay/index.js';
import { ensureBundle } from '../helpers/bundle.js';
import { testConfig } from '../helpers/config.js';

// The replay loop on the real bundle, fed recorded events directly: what each kind of record
// counts as, and that samples stay bounded.

const REGISTER = 'cynode/register/decision';
const event = (fields: Partial<DecisionEvent>): DecisionEvent => ({
  decision_id: randomUUID(),
  path: REGISTER,
  input: {},
  erased: [],
  revision: 'before',
  bundle_digest: null,
  requested_by: null,
  timestamp: new Date(),
  eval_ns: 1,
  ...fields,
});
async function* batches(...events: DecisionEvent[][]): AsyncGenerator<DecisionEvent[]> {
  for (const batch of events) yield batch;
}

test('recorded errors, unknown paths and malformed results count as errors; masked ones are never samples', async (t) => {
  const candidate = await loadCandidate(readFileSync(await ensureBundle()), testConfig().policy, pino({ level: 'silent' }));
  const denied = { allow: false, reasons: ['context_missing'] };
  const report = await replayBatches(
    candidate,
    batches(
      [event({ result: denied }), event({ result: { allow: true, reasons: [] } })],
      [
        event({ error: { code: 'policy_evaluation_failed', message: 'x' } }),
        event({ result: { allow: 'yes' } }),
        event({ path: 'cynode/gone/decision', result: denied }),
        event({ result: { allow: true, reasons: [] }, erased: ['/subject/provider'] }),
      ],
    ),
    new Date(0),
  );
  const { samples, ...counts } = report.entrypoints[REGISTER]!;
  t.deepEqual(counts, { evaluated: 5, unchanged: 1, allow_to_deny: 1, deny_to_allow: 0, reasons_changed: 0, masked: 1, errors: 2 });
  t.deepEqual(report.entrypoints['cynode/gone/decision'], {
    ...report.entrypoints['cynode/gone/decision']!,
    evaluated: 1,
    errors: 1,
  });
  t.is(report.total, 6);
  t.deepEqual(
    samples.map((s) => [s.before.allow, s.after.allow]),
    [[true, false]],
  );
});

test('samples stop at the limit while counting goes on', async (t) => {
  const candidate = await loadCandidate(readFileSync(await ensureBundle()), testConfig().policy, pino({ level: 'silent' }));
  const flips = Array.from({ length: MAX_SAMPLES * 3 }, () => event({ result: { allow: true, reasons: [] } }));
  const report = await replayBatches(candidate, batches(flips), new Date(0));
  t.is(report.entrypoints[REGISTER]!.allow_to_deny, MAX_SAMPLES * 3);
  t.is(report.entrypoints[REGISTER]!.samples.length, MAX_SAMPLES);
});
