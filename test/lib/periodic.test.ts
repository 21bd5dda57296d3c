import { mock } from 'node:test';
import test from 'ava';
import { startPeriodic } from '../../src/lib/periodic.js';

// A controllable clock: node's mock timers replace setInterval, so each test moves time by
// hand and nothing sleeps. The clock is process-wide, so these tests run one at a time.
test.beforeEach(() => mock.timers.enable({ apis: ['setInterval'] }));
test.afterEach.always(() => mock.timers.reset());

/** Lets settled promises run their callbacks (setImmediate is left on the real clock). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Moves the mock clock forward `ms`, letting each run's promise settle as it goes. */
async function advance(ms: number, step = 10): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    mock.timers.tick(step);
    await settle();
  }
}

test.serial('runs the task once per interval, never before the first interval', async (t) => {
  let runs = 0;
  const periodic = startPeriodic(
    async () => runs++,
    100,
    () => t.fail(),
  );
  await advance(90);
  t.is(runs, 0);
  await advance(10);
  t.is(runs, 1);
  await advance(200);
  t.is(runs, 3);
  periodic.stop();
});

test.serial('a tick that finds the previous run still going is skipped', async (t) => {
  let runs = 0;
  let finish!: () => void;
  const periodic = startPeriodic(
    () => {
      runs++;
      return new Promise<void>((resolve) => (finish = resolve));
    },
    100,
    () => t.fail(),
  );
  await advance(500);
  t.is(runs, 1, 'four ticks passed while the first run was going');
  finish();
  await settle();
  await advance(100);
  t.is(runs, 2, 'the next tick after it ended runs again');
  periodic.stop();
});

test.serial('a failed run goes to onError and the next tick runs again', async (t) => {
  const errors: unknown[] = [];
  let runs = 0;
  const periodic = startPeriodic(
    async () => {
      runs++;
      if (runs === 1) throw new Error('database down');
    },
    100,
    (err) => errors.push(err),
  );
  await advance(100);
  t.is(errors.length, 1);
  t.is((errors[0] as Error).message, 'database down');
  await advance(100);
  t.is(runs, 2);
  t.is(errors.length, 1, 'the second run succeeded');
  periodic.stop();
});

test.serial('stop() ends the ticks', async (t) => {
  let runs = 0;
  const periodic = startPeriodic(
    async () => runs++,
    100,
    () => t.fail(),
  );
  await advance(100);
  periodic.stop();
  await advance(500);
  t.is(runs, 1);
});
