import { execFileSync, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { bundlePath } from './bundle.js';
import { type GatewayProcess, startGatewayProcess } from './gateway.js';

/** One gateway replica process (every role) and its control plane's base URL. */
export interface Replica {
  process: GatewayProcess;
  /** `http://127.0.0.1:<port>` of the control plane. */
  url: string;
  /** Sends SIGKILL (no drain, no flush) and waits for the process to end. */
  kill(): Promise<void>;
}

/** N gateway processes on one PostgreSQL, all on loopback ports. */
export interface Replicas {
  replicas: Replica[];
  urls(): string[];
  /** Starts one more replica with the same environment (plus `extra`). */
  add(extra?: Record<string, string>): Promise<Replica>;
  /** SIGTERMs every replica still running and waits for each to exit. */
  stop(): Promise<void>;
}

/**
 * Starts `n` replicas of `cynode-gateway serve` (every role, ports 0, the suite's bundle
 * unless `env` names another; logs at info, which readiness is read from) on the database
 * in `env.DATABASE_URL`, in parallel. Callers register `stop()` with `t.teardown` or
 * `test.after.always` so processes never outlive a failed test.
 */
export async function startReplicas(n: number, env: Record<string, string>, args: string[] = []): Promise<Replicas> {
  const replicas: Replica[] = [];
  const started: GatewayProcess[] = [];
  const one = async (extra: Record<string, string> = {}): Promise<Replica> => {
    const p = await startGatewayProcess({ CYNODE_BUNDLE: bundlePath(), ...env, ...extra }, args);
    started.push(p);
    const replica: Replica = {
      process: p,
      url: `http://127.0.0.1:${p.ports.control}`,
      async kill() {
        p.child.kill('SIGKILL');
        await p.exited;
      },
    };
    replicas.push(replica);
    return replica;
  };
  const stop = async () => {
    for (const p of started) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
    await Promise.all(started.map((p) => p.exited));
  };
  const results = await Promise.allSettled(Array.from({ length: n }, () => one()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return { replicas, urls: () => replicas.map((r) => r.url), add: one, stop };
}

/**
 * A loopback TCP proxy in front of PostgreSQL that refuses every connection whose startup
 * message names `application_name` `refuse` (the gateway's LISTEN connection), while
 * passing all other connections. With it a test takes LISTEN/NOTIFY away from replicas
 * and leaves their queries working, as a network policy or pooler without LISTEN would.
 */
export interface ListenBlocker {
  port: number;
  /** How many connections were refused so far. */
  refused(): number;
  close(): Promise<void>;
}

export async function startListenBlocker(
  targetPort: number,
  refuse = 'cynode-gateway-listen',
  targetHost = '127.0.0.1',
): Promise<ListenBlocker> {
  const sockets = new Set<Socket>();
  let refused = 0;
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    client.once('data', (first: Buffer) => {
      // The startup message (no SSL request: the test URLs use plain TCP) carries its
      // parameters as NUL-terminated name/value pairs.
      if (first.includes(Buffer.from(`application_name\0${refuse}\0`))) {
        refused++;
        client.destroy();
        return;
      }
      const upstream = connect(targetPort, targetHost);
      sockets.add(upstream);
      upstream.on('close', () => {
        sockets.delete(upstream);
        client.destroy();
      });
      upstream.on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      upstream.write(first);
      client.pipe(upstream).pipe(client);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    refused: () => refused,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** `url` with its host and port replaced by 127.0.0.1:`port`. */
export function viaPort(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}

/** What a fleet of failover workers saw. */
export interface FleetStats {
  /** Results the gateway answered `accepted: true`, per job (a replayed answer counts again). */
  accepted: Map<string, number>;
  /** Requests that failed at the network level and were retried on another replica. */
  failovers: number;
  /** Every answer >= 500: where, and its error code. */
  serverErrors: { path: string; status: number; code: string | undefined }[];
  /** The answer of each `api.call` a job made: status and error code. */
  apiCalls: { status: number; code: string | undefined }[];
  /** Results refused because the lease had lapsed (the job went to someone else). */
  superseded: number;
}

/** Options of a fleet of workers speaking raw HTTP to a set of replicas. */
export interface FleetOptions {
  /** Base URLs of the replicas; worker i starts at replica i % n and moves on when one fails. */
  urls: string[];
  tokens: string[];
  /** The `api.call` body for a job whose payload asks for one (job id filled in). */
  apiCall?: (job: { job_id: string; payload: Record<string, unknown> }) => Record<string, unknown> | undefined;
  heartbeatMs?: number;
  /** How long each job "runs" before its result is reported (leases held, heartbeats sent). */
  workMs?: number;
}

type Json = Record<string, any>;

/**
 * Workers that poll, run, heartbeat and report over raw HTTP, failing over to the next
 * replica when one stops answering (a refused or cut connection) or answers 503, and
 * retrying the same report there: what a real worker does behind a load balancer. Runs
 * until `stop()`.
 */
export function startFleet(options: FleetOptions): { stats: FleetStats; stop(): Promise<void> } {
  const stats: FleetStats = { accepted: new Map(), failovers: 0, serverErrors: [], apiCalls: [], superseded: 0 };
  let stopped = false;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const run = async (index: number) => {
    const token = options.tokens[index]!;
    let at = index % options.urls.length;
    const held = new Map<string, string>();
    /** One request, moved to the next replica on a network failure or a 503, until it gets an answer. */
    const send = async (path: string, body: unknown): Promise<{ status: number; body: Json }> => {
      for (;;) {
        try {
          const res = await fetch(`${options.urls[at]}${path}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(15_000),
          });
          const text = await res.text();
          const json = (text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : {}) as Json;
          if (res.status >= 500) stats.serverErrors.push({ path, status: res.status, code: json.error?.code });
          if (res.status !== 503) return { status: res.status, body: json };
        } catch {
          stats.failovers++;
        }
        if (stopped) return { status: 0, body: {} };
        at = (at + 1) % options.urls.length;
        await sleep(100);
      }
    };
    const heartbeat = setInterval(() => {
      if (held.size === 0) return;
      void send('/status', {
        health: { ok: true },
        load: { active_jobs: held.size },
        jobs: [...held].map(([job_id, lease_id]) => ({ job_id, lease_id })),
      });
    }, options.heartbeatMs ?? 500);
    try {
      while (!stopped) {
        const polled = await send('/jobs/poll', { max_jobs: 2, wait_ms: 500 });
        const jobs = (polled.status === 200 ? polled.body.jobs : []) as {
          job_id: string;
          lease_id: string;
          payload: Record<string, unknown>;
        }[];
        for (const j of jobs) held.set(j.job_id, j.lease_id);
        for (const job of jobs) {
          if (options.workMs) await sleep(options.workMs);
          let result: unknown = { echo: job.payload.input ?? null, by: index };
          const callBody = options.apiCall?.(job);
          if (callBody) {
            const answer = await send('/v1/api/call', callBody);
            stats.apiCalls.push({ status: answer.status, code: answer.body.error?.code });
            result = { api_status: answer.status, code: answer.body.error?.code ?? null, cost_usd: answer.body.cost_usd ?? null };
          }
          const report = await send('/result', { job_id: job.job_id, lease_id: job.lease_id, status: 'succeeded', result });
          held.delete(job.job_id);
          if (report.status === 200 && report.body.accepted === true)
            stats.accepted.set(job.job_id, (stats.accepted.get(job.job_id) ?? 0) + 1);
          else if (report.body.error?.code === 'lease_superseded') stats.superseded++;
        }
        if (polled.status !== 200 && !stopped) await sleep(200);
      }
    } finally {
      clearInterval(heartbeat);
    }
  };
  const running = options.tokens.map((_, i) => run(i));
  return {
    stats,
    async stop() {
      stopped = true;
      await Promise.all(running);
    },
  };
}

/** A PostgreSQL cluster of the test's own (initdb in a temp folder, loopback port), to stop and start at will. */
export interface PrivatePostgres {
  port: number;
  /** URL of database `name` on this cluster (user postgres, trust auth). */
  url(name?: string): string;
  createDatabase(name: string): Promise<string>;
  /** `pg_ctl stop -m immediate`: every backend killed at once, as a crash would, recovery on the next start. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the cluster if it runs and deletes its folder. */
  destroy(): Promise<void>;
}

/** The newest installed PostgreSQL server binaries. */
function postgresBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error(`no PostgreSQL server binaries under ${root}`);
  return join(root, versions[0]!, 'bin');
}

/** Runs a PostgreSQL tool as the `postgres` user when we are root (the server refuses root). */
function pgTool(tool: string, args: string[]): Promise<void> {
  const bin = join(postgresBin(), tool);
  const [cmd, argv] = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${tool} ${args.join(' ')} exited ${code}:\n${out}`))));
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * initdb into a temp folder and run `postgres` on a free loopback port, so a test can crash
 * and restart "the database" without touching the PostgreSQL other test files share.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'cynode-pg-'));
  const data = join(dir, 'data');
  // The server refuses to run as root: as root, the folder goes to the postgres user.
  if (process.getuid?.() === 0) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()), -1);
  const port = await freePort();
  let running = false;
  await pgTool('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  const start = async () => {
    await pgTool('pg_ctl', [
      '-D',
      data,
      '-l',
      join(dir, 'server.log'),
      '-w',
      '-t',
      '30',
      '-o',
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100`,
      'start',
    ]);
    running = true;
  };
  const stop = async () => {
    await pgTool('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    running = false;
  };
  await start();
  const url = (name = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${name}`;
  return {
    port,
    url,
    async createDatabase(name) {
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    stop,
    start,
    async destroy() {
      if (running) await stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
