/** What the benchmarks share: open-loop load over keep-alive node:http, percentiles, child processes. */
import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import { createServer } from 'node:net';
import { packageRoot } from '../src/lib/package-root.js';

/** The load generator's connections: node:http costs the machine less than fetch. */
export const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

/** One endpoint under load: where, with which headers, and the body of each request. */
export interface Target {
  url: string;
  headers: Record<string, string>;
  body: (stream: boolean) => string;
  /** Headers that depend on the body (a forward token), made before the clock starts. */
  sign?: (body: string) => Promise<Record<string, string>>;
  /** Whether a 2xx answer is a success (JSON-RPC carries errors in 200 answers). */
  ok?: (text: string) => boolean;
}

export function percentiles(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))]! * 1000) / 1000;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: at(1) };
}

/** Options of one JSON request. */
export interface JsonRequest {
  method?: string;
  /** Bearer token, if any. */
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/**
 * One JSON request over the shared agent: resolves with the parsed answer, rejects on a status
 * >= 400. A reset on a reused keep-alive socket (the server closed it as the request left, which
 * a loaded machine makes likely) is retried once on a new socket, as Node's docs advise: the
 * server never read that request.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function requestJson(url: string, init: JsonRequest = {}, retried = false): Promise<Record<string, any>> {
  const payload = init.body === undefined ? undefined : JSON.stringify(init.body);
  const method = init.method ?? (payload === undefined ? 'GET' : 'POST');
  const headers: Record<string, string | number> = { ...init.headers };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  if (payload !== undefined) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = Buffer.byteLength(payload);
  }
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if ((res.statusCode ?? 500) >= 400)
          return reject(new Error(`${method} ${new URL(url).pathname}: ${res.statusCode} ${text.slice(0, 300)}`));
        try {
          resolve(text ? JSON.parse(text) : {});
        } catch {
          reject(new Error(`${new URL(url).pathname}: not JSON: ${text.slice(0, 200)}`));
        }
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!retried && req.reusedSocket && err.code === 'ECONNRESET') resolve(requestJson(url, init, true));
      else
        reject(
          new Error(
            `${method} ${url}: ${err.code ?? err.message}${req.reusedSocket ? ' (reused socket)' : ''}${retried ? ' (retried)' : ''}`,
            { cause: err },
          ),
        );
    });
    req.end(payload);
  });
}

/** One request; resolves with its latency in ms, or rejects on a non-2xx answer. */
export async function send(target: Target, stream: boolean): Promise<number> {
  const body = target.body(stream);
  const signed = target.sign ? await target.sign(body) : {};
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const headers = { ...target.headers, ...signed, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    const req = http.request(target.url, { agent, method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => target.ok && chunks.push(c));
      res.on('end', () => {
        const ms = performance.now() - started;
        if ((res.statusCode ?? 500) >= 300) return reject(new Error(`status ${res.statusCode}`));
        const text = Buffer.concat(chunks).toString('utf8');
        if (target.ok && !target.ok(text)) return reject(new Error(`failed: ${text.slice(0, 200)}`));
        resolve(ms);
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Open-loop load at `rate` per second for `seconds`: latencies of the answers, count of failures. */
export async function load(target: Target, stream: boolean, rate: number, seconds: number) {
  const total = Math.round(rate * seconds);
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const inflight: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inflight.push(
      send(target, stream).then(
        (ms) => void latencies.push(ms),
        (err: Error) => {
          errors++;
          firstError ??= err.message;
        },
      ),
    );
  }
  await Promise.all(inflight);
  return { latencies, errors, firstError };
}

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export function startChild(
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, args, { cwd: packageRoot(), env: { ...process.env, ...env } });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready in 30 s: ${args.join(' ')}\n${out}`)), 30_000);
    const onData = (c: Buffer) => {
      out += c.toString('utf8');
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve({ child, output: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
}
