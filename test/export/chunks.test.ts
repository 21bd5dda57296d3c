import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import test from 'ava';
import { createChunker } from '../../src/export/chunks.js';

const event = (i: number, pad = '') => JSON.stringify({ decision_id: `id-${i}`, path: 'cynode/register/decision', input: { i, pad } });

test('chunks take the longest prefix that compresses under the limit, and hold valid JSON arrays', async (t) => {
  const chunker = createChunker(2048);
  let events = Array.from({ length: 2000 }, (_, i) => event(i, randomBytes(8).toString('hex')));
  const seen: string[] = [];
  while (events.length > 0) {
    const chunk = await chunker.nextChunk((i) => events[i]!, events.length);
    if ('oversized' in chunk) return t.fail('no event here is oversized');
    t.true(chunk.body.length <= 2048);
    const decoded = JSON.parse(gunzipSync(chunk.body).toString('utf8')) as { decision_id: string }[];
    t.is(decoded.length, chunk.count);
    seen.push(...decoded.map((e) => e.decision_id));
    events = events.slice(chunk.count);
  }
  t.deepEqual(
    seen,
    Array.from({ length: 2000 }, (_, i) => `id-${i}`),
  );
});

test('an event that alone compresses past the limit is reported oversized', async (t) => {
  const chunker = createChunker(1024);
  const big = event(0, randomBytes(4096).toString('base64'));
  const events = [big, event(1)];
  t.deepEqual(await chunker.nextChunk((i) => events[i]!, events.length), { oversized: true });
});
