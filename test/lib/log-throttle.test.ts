import test from 'ava';
import { createLogThrottle, createLogThrottles } from '../../src/lib/log-throttle.js';
import { captureLogger } from '../helpers/start.js';

const parsed = (lines: string[]) => lines.map((l) => JSON.parse(l) as Record<string, unknown>);

test('the first failure is logged at once, then one line per interval with the repeats it stands for, then the recovery', (t) => {
  const { lines, logger } = captureLogger();
  let now = 0;
  const throttle = createLogThrottle(logger, { intervalMs: 1000, now: () => now });
  throttle.recovered('fine again'); // nothing failed: nothing to say
  for (; now < 3500; now += 10) throttle.failure({ err: 'down' }, 'database unavailable');
  throttle.recovered('fine again', { component: 'x' });
  const out = parsed(lines);
  t.deepEqual(
    out.map((l) => [l.msg, l.repeated, l.failures]),
    [
      ['database unavailable', undefined, undefined],
      ['database unavailable', 99, undefined],
      ['database unavailable', 99, undefined],
      ['database unavailable', 99, undefined],
      ['fine again', undefined, 350],
    ],
  );
  t.is(out[0]!.level, 'warn');
  t.is(out[4]!.level, 'info');
  // After a recovery the next failure is news again.
  throttle.failure({}, 'database unavailable');
  t.is(lines.length, 6);
});

test('keyed throttles do not hide one kind of failure behind another', (t) => {
  const { lines, logger } = captureLogger();
  const throttles = createLogThrottles(logger, { level: 'error', now: () => 0 });
  for (let i = 0; i < 10; i++) {
    throttles('database_unavailable').failure({}, 'database');
    throttles('decision_log_unavailable').failure({}, 'decision log');
  }
  t.deepEqual(
    parsed(lines).map((l) => [l.level, l.msg]),
    [
      ['error', 'database'],
      ['error', 'decision log'],
    ],
  );
});
