import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { SEED_WORKER } from './fixtures.js';
import { type Answer, call } from './http.js';

/** A PSK created through the admin API. */
export async function createPsk(base: string, name = 'test'): Promise<{ id: string; secret: string }> {
  const res = await call<{ id: string; secret: string }>(base, '/v1/psks', { json: { name } });
  if (res.status !== 201) throw new Error(`PSK not created: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** `POST /register` with a PSK and a report. */
export function register(base: string, psk: string | null, report: unknown, bearer?: string): Promise<Answer> {
  return call(base, '/register', { token: bearer ?? null, json: report, headers: psk === null ? {} : { 'x-cynode-psk': psk } });
}

/** A registered worker: its token and report. */
export interface TestWorker {
  nodeId: string;
  token: string;
  report: Record<string, unknown>;
}

/** Registers a worker (the README's Example 1 report unless overridden) and returns its token. */
export async function registerWorker(base: string, psk: string, overrides: Record<string, unknown> = {}): Promise<TestWorker> {
  const report = { ...SEED_WORKER, max_concurrency: 4, ...overrides };
  const res = await register(base, psk, report);
  if (res.status !== 200) throw new Error(`registration failed: ${res.status} ${JSON.stringify(res.body)}`);
  return { nodeId: String(report.node_id), token: String(res.body.token), report };
}

let keys = 0;
/** Submits a job with a fresh Idempotency-Key; returns the answer. */
export function submitJob(base: string, job: Record<string, unknown>, key = `k-${process.pid}-${Date.now()}-${keys++}`): Promise<Answer> {
  return call(base, '/v1/jobs', {
    json: { task_id: 'task-1', user_id: 'user-1', payload: { kind: 'echo', input: 'hi' }, ...job },
    headers: { 'idempotency-key': key },
  });
}

/** `POST /jobs/poll` as a worker. */
export function poll(
  base: string,
  worker: TestWorker,
  body: Record<string, unknown> = {},
): Promise<Answer<{ jobs: { job_id: string; lease_id: string; lease_expires_at: string; payload: Record<string, unknown> }[] }>> {
  return call(base, '/jobs/poll', { token: worker.token, json: body });
}

/** The secret half of a PSK `cynpsk_<12-char id>_<secret>` (the secret may itself contain `_`). */
export const pskSecretPart = (psk: string): string => psk.slice('cynpsk_'.length + 13);
/** The id of a PSK `cynpsk_<12-char id>_<secret>`. */
export const pskId = (psk: string): string => psk.slice('cynpsk_'.length, 'cynpsk_'.length + 12);

/** What a raw registration from a chosen source address got. */
export interface SourcedAnswer {
  status: number;
  code: string | undefined;
  retryAfter: string | undefined;
}

/**
 * `POST /register` to a loopback gateway from a chosen source address (127.0.0.0/8 all reach
 * it), over a fresh connection: what the PSK failure throttle counts by.
 */
export function registerFrom(
  port: number,
  pskHeader: string | null,
  source = '127.0.0.1',
  extra: Record<string, string> = {},
  nodeId = `psk-${randomBytes(4).toString('hex')}`,
): Promise<SourcedAnswer> {
  const body = JSON.stringify({ ...SEED_WORKER, node_id: nodeId });
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    ...extra,
  };
  if (pskHeader !== null) headers['x-cynode-psk'] = pskHeader;
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/register', method: 'POST', headers, localAddress: source, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () => {
          const parsed = JSON.parse(text) as { error?: { code?: string } };
          resolve({ status: res.statusCode!, code: parsed.error?.code, retryAfter: res.headers['retry-after'] });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
