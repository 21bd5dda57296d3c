/** What the benchmarks share: open-loop load over keep-alive node:http, percentiles, child processes. */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative } from 'node:path';
import { packageRoot } from '../src/lib/package-root.js';

/**
 * The gateway processes a benchmark starts run the compiled build, as deployed
 * (`node dist/src/cli/main.js`), not the source through tsx (whose loader and per-closure name
 * helpers cost CPU a deployment never pays); Portkey runs its build and OPA its binary. The
 * build is brought up to date first when any source or migration is newer than its output.
 * BENCH_RUNTIME=tsx measures the source instead.
 */
function useCompiledGateway(): void {
  if (process.env.BENCH_RUNTIME === 'tsx') return;
  const root = packageRoot();
  const modified = (f: string) => statSync(f, { throwIfNoEntry: false })?.mtimeMs ?? 0;
  const stale = ['src', 'migrations'].some((dir) =>
    (readdirSync(join(root, dir), { recursive: true }) as string[])
      .filter((f) => f.endsWith('.ts'))
      .some((f) => {
        const source = join(root, dir, f);
        return modified(source) > modified(join(root, 'dist', relative(root, source).replace(/\.ts$/, '.js')));
      }),
  );
  if (stale)
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], {
      cwd: root,
      stdio: 'inherit',
    });
  process.env.CYNODE_TEST_CLI = 'dist';
}
useCompiledGateway();

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

/**
 * One request; resolves with its latency in ms, or rejects on a non-2xx answer. A reset on a
 * reused keep-alive socket (the server closed it as the request left) is sent again once, on a
 * new socket, as `requestJson` does; the latency counts both.
 */
export async function send(target: Target, stream: boolean): Promise<number> {
  const body = target.body(stream);
  const signed = target.sign ? await target.sign(body) : {};
  return sendSigned(target, body, signed, performance.now(), false);
}

function sendSigned(target: Target, body: string, signed: Record<string, string>, started: number, retried: boolean): Promise<number> {
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
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!retried && req.reusedSocket && err.code === 'ECONNRESET') resolve(sendSigned(target, body, signed, started, true));
      else reject(err);
    });
    req.end(body);
  });
}

/** Open-loop load at `rate` per second for `seconds`: latencies of the answers, count of failures. */
export async function load(target: Target, stream: boolean, rate: number, seconds: number) {
  const latencies: number[] = [];
  const { errors, firstError } = await openLoop(
    Math.round(rate * seconds),
    rate,
    async () => void latencies.push(await send(target, stream)),
  );
  return { latencies, errors, firstError };
}

/** `calls` runs of `one`, started on schedule at `rate` per second whether or not earlier ones ended (open loop); failures counted. */
export async function openLoop(calls: number, rate: number, one: () => Promise<void>) {
  let errors = 0;
  let firstError: string | undefined;
  const inflight: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < calls; i++) {
    const wait = start + (i * 1000) / rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inflight.push(
      one().catch((err: Error) => {
        errors++;
        firstError ??= err.message;
      }),
    );
  }
  await Promise.all(inflight);
  return { errors, firstError };
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

/** The offered rates a knee is searched over. */
export const KNEE_RATES = [100, 300, 600, 1000, 1500, 2000];

/** One step of a knee search: the offered rate and what it added over the direct path. */
export interface KneeStep {
  rate: number;
  addedP50: number;
  addedP99: number;
  errors: number;
  firstError?: string;
}

/**
 * The knee of `target`: the highest offered rate (stepping through `rates`, stopping at the
 * first miss) whose added p99 over `direct` at the same rate stays at most `maxAddedP99Ms`
 * with no errors. 0 when even the first rate misses.
 */
export async function findKnee(
  target: Target,
  direct: Target,
  options: { stream?: boolean; seconds: number; maxAddedP99Ms?: number; rates?: number[] },
): Promise<{ knee: number; steps: KneeStep[] }> {
  const stream = options.stream ?? false;
  const limit = options.maxAddedP99Ms ?? 10;
  const steps: KneeStep[] = [];
  let knee = 0;
  for (const rate of options.rates ?? KNEE_RATES) {
    const base = percentiles((await load(direct, stream, rate, options.seconds)).latencies);
    const run = await load(target, stream, rate, options.seconds);
    const p = percentiles(run.latencies);
    const step: KneeStep = {
      rate,
      addedP50: Math.round((p.p50 - base.p50) * 1000) / 1000,
      addedP99: Math.round((p.p99 - base.p99) * 1000) / 1000,
      errors: run.errors,
      ...(run.firstError && { firstError: run.firstError }),
    };
    steps.push(step);
    if (step.errors > 0 || step.addedP99 > limit || p.n === 0) break;
    knee = rate;
  }
  return { knee, steps };
}

const TICKS_PER_S = 100; // USER_HZ on Linux

/** User + system CPU a process has used so far, in ms, read from /proc (Linux). */
export function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S;
}

/** Resident set size of a process in KiB, and its open file descriptors (Linux). */
export function processFootprint(pid: number): { rssKb: number; fds: number } {
  const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { rssKb: Number(rss?.[1] ?? 0), fds: readdirSync(`/proc/${pid}/fd`).length };
}

/** One target verdict as every benchmark prints it and `npm run bench` tabulates it (docs/benchmarks.md). */
export interface Verdict {
  path: string;
  measure: string;
  cynode: number;
  peer: number | null;
  ratio: number | null;
  target: string;
  met: boolean;
}

/** `calls` requests, `concurrency` at a time, each lane sending when its last one returned: time taken and failures. */
export async function closedLoop(target: Target, options: { calls: number; concurrency: number; stream?: boolean }) {
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (next++ < options.calls)
        await send(target, options.stream ?? false).catch((err: Error) => {
          errors++;
          firstError ??= err.message;
        });
    }),
  );
  return { seconds: (performance.now() - started) / 1000, errors, ...(firstError !== undefined && { firstError }) };
}
