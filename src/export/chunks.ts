import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';

const gzip = promisify(gzipCallback);

/** One upload: a gzip-compressed JSON array of `count` events, at most the upload limit in size. */
export interface Chunk {
  body: Buffer;
  count: number;
}

/** What {@link nextChunk} made of the head of the queue. */
export type ChunkResult = Chunk | { oversized: true };

// A first guess of how well decision events compress, before any chunk has been measured.
const FIRST_RATIO = 8;
// Aim a little under the limit so a measured guess rarely needs a second compression.
const FILL = 0.9;

/**
 * Packs the longest prefix of the `available` events that compresses to at most `limitBytes`
 * into one chunk, as OPA's chunk encoder does; `json(i)` encodes the i-th event, and only the
 * events a chunk looks at are encoded. It guesses the count from the last
 * measured compressed size per event, compresses off the event loop, and shrinks the count
 * until it fits. A single event that alone exceeds the limit is `oversized`: the caller drops
 * it (and counts the drop) rather than retrying it forever.
 */
export function createChunker(limitBytes: number) {
  let bytesPerEvent: number | undefined;
  return {
    async nextChunk(json: (i: number) => string, available: number): Promise<ChunkResult> {
      const perEvent = bytesPerEvent ?? Math.max(1, json(0).length / FIRST_RATIO);
      let count = clamp(Math.floor((limitBytes * FILL) / perEvent), 1, available);
      for (;;) {
        const body = await gzip(`[${Array.from({ length: count }, (_, i) => json(i)).join(',')}]`);
        bytesPerEvent = body.length / count;
        if (body.length <= limitBytes) return { body, count };
        if (count === 1) return { oversized: true };
        count = clamp(Math.floor((count * limitBytes * FILL) / body.length), 1, count - 1);
      }
    },
    /** The compressed size per event of the last chunk (for the throughput figures). */
    bytesPerEvent: () => bytesPerEvent,
  };
}

function clamp(n: number, min: number, max: number): number {
  return Math.min(Math.max(n, min), max);
}
