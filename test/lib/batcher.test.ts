import test from 'ava';
import { createBatcher } from '../../src/lib/batcher.js';

/** A write whose batches the test releases one at a time, recording what each batch held. */
function gatedWrite() {
  const batches: number[][] = [];
  const gates: (() => void)[] = [];
  const write = async (items: number[]): Promise<string[]> => {
    batches.push(items);
    await new Promise<void>((resolve) => gates.push(resolve));
    return items.map((i) => `done-${i}`);
  };
  /** Lets the oldest waiting batch finish, then yields so the next one can start. */
  const release = async () => {
    gates.shift()!();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { batches, write, release };
}

test('an item submitted while idle is written at once, alone', async (t) => {
  const w = gatedWrite();
  const batcher = createBatcher(w.write, 10);
  const outcome = batcher.submit(1);
  t.deepEqual(w.batches, [[1]], 'written before anything else arrives, without a timer');
  await w.release();
  t.is(await outcome, 'done-1');
});

test('items that arrive while a batch is in flight go together in the next one', async (t) => {
  const w = gatedWrite();
  const batcher = createBatcher(w.write, 10);
  const outcomes = [1, 2, 3, 4].map((i) => batcher.submit(i));
  t.deepEqual(w.batches, [[1]]);
  await w.release();
  t.deepEqual(w.batches, [[1], [2, 3, 4]]);
  await w.release();
  t.deepEqual(await Promise.all(outcomes), ['done-1', 'done-2', 'done-3', 'done-4'], 'each caller gets its own outcome, in order');
});

test('a batch never holds more than maxBatch items', async (t) => {
  const w = gatedWrite();
  const batcher = createBatcher(w.write, 2);
  const outcomes = [1, 2, 3, 4, 5, 6].map((i) => batcher.submit(i));
  for (let i = 0; i < 4; i++) await w.release();
  t.deepEqual(w.batches, [[1], [2, 3], [4, 5], [6]]);
  t.deepEqual(
    await Promise.all(outcomes),
    [1, 2, 3, 4, 5, 6].map((i) => `done-${i}`),
  );
});

test('a write that throws rejects every item of its batch, and the next batch still runs', async (t) => {
  const batches: number[][] = [];
  let gate!: () => void;
  const write = async (items: number[]): Promise<number[]> => {
    batches.push(items);
    if (items.includes(1)) {
      await new Promise<void>((resolve) => (gate = resolve));
      return items;
    }
    if (items.includes(2)) throw new Error('disk full');
    return items.map((i) => i * 10);
  };
  const batcher = createBatcher(write, 2);
  const first = batcher.submit(1);
  const failing = [batcher.submit(2), batcher.submit(3)];
  const after = batcher.submit(4);
  gate();
  t.is(await first, 1);
  await Promise.all(failing.map((f) => t.throwsAsync(f, { message: 'disk full' })));
  t.is(await after, 40);
  t.deepEqual(batches, [[1], [2, 3], [4]]);
});

test('idle() resolves once nothing is queued or in flight', async (t) => {
  const w = gatedWrite();
  const batcher = createBatcher(w.write, 10);
  await batcher.idle(); // nothing submitted yet: resolves at once
  const outcomes = [1, 2, 3].map((i) => batcher.submit(i));
  let idle = false;
  const waiting = batcher.idle().then(() => (idle = true));
  await w.release();
  t.false(idle, 'the second batch is still in flight');
  await w.release();
  await waiting;
  t.true(idle);
  t.deepEqual(await Promise.all(outcomes), ['done-1', 'done-2', 'done-3']);
});
