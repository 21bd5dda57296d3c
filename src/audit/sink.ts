import { appendFile, readFile } from 'node:fs/promises';
import { createHttpClient, type HttpClient } from '../lib/http-client.js';
import type { Checkpoint } from './checkpoint.js';

/** Where checkpoints go besides PostgreSQL: somewhere a database superuser cannot rewrite. */
export interface CheckpointSink {
  write(checkpoints: Checkpoint[]): Promise<void>;
  close(): void;
}

const ATTEMPTS = 4;
const RETRY_BASE_MS = 250;
const TIMEOUT_MS = 5_000;
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

const isUrl = (target: string) => /^https?:\/\//.test(target);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The sink named by `audit.checkpoints.sink`: a file path (one JSON line per checkpoint,
 * appended) or an http(s) URL (a POST of `{"checkpoints": [...]}`, retried with backoff on a
 * network failure or a non-2xx answer).
 */
export function createCheckpointSink(target: string): CheckpointSink {
  if (!isUrl(target))
    return {
      write: (checkpoints) => appendFile(target, checkpoints.map((cp) => JSON.stringify(cp) + '\n').join(''), { mode: 0o600 }),
      close: () => undefined,
    };
  const client = createHttpClient({ maxSockets: 2 });
  return {
    async write(checkpoints) {
      const body = JSON.stringify({ checkpoints });
      for (let attempt = 1; ; attempt++) {
        try {
          await post(client, new URL(target), body);
          return;
        } catch (err) {
          if (attempt >= ATTEMPTS) throw err;
          await sleep(RETRY_BASE_MS * 2 ** (attempt - 1));
        }
      }
    },
    close: () => client.close(),
  };
}

async function post(client: HttpClient, url: URL, body: string): Promise<void> {
  const res = await client.request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    body,
    totalTimeoutMs: TIMEOUT_MS,
    maxResponseBytes: 64 * 1024,
  });
  await res.bytes();
  if (res.status < 200 || res.status > 299) throw new Error(`checkpoint sink answered ${res.status}`);
}

/**
 * Reads checkpoints back from a sink for `audit verify --checkpoints`: a file of JSON lines,
 * or a URL answering JSON lines, a JSON array, or `{"checkpoints": [...]}`.
 */
export async function readCheckpoints(source: string): Promise<Checkpoint[]> {
  let text: string;
  if (isUrl(source)) {
    const client = createHttpClient({ maxSockets: 1 });
    try {
      const res = await client.request(new URL(source), {
        method: 'GET',
        headers: { accept: 'application/json' },
        totalTimeoutMs: 30_000,
        maxResponseBytes: MAX_ANSWER_BYTES,
      });
      text = await res.text();
      if (res.status !== 200) throw new Error(`${source} answered ${res.status}`);
    } finally {
      client.close();
    }
  } else {
    text = await readFile(source, 'utf8');
  }
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) return JSON.parse(trimmed) as Checkpoint[];
  if (trimmed.startsWith('{') && !trimmed.includes('\n')) {
    const parsed = JSON.parse(trimmed) as { checkpoints?: Checkpoint[] } & Partial<Checkpoint>;
    return parsed.checkpoints ?? [parsed as Checkpoint];
  }
  return trimmed
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Checkpoint);
}
