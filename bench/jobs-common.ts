/** What the job queue benchmarks (dispatch, fleet) share: registering workers, submitting jobs, PostgreSQL's CPU. */
import http from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { agent, processCpuMs, requestJson } from './lib.js';

/** A capability report of a cloud worker (`i` even) or a local node (`i` odd): both kinds pass through the policy. */
export function capabilityReport(prefix: string, i: number, maxConcurrency: number) {
  return i % 2 === 0
    ? {
        node_id: `${prefix}cloud-${i}`,
        labels: ['cloud', 'provider_openai'],
        region: 'us-east-1',
        inference_mode: 'provider_api',
        supported_providers: ['openai'],
        max_concurrency: maxConcurrency,
      }
    : {
        node_id: `${prefix}local-${i}`,
        labels: ['local'],
        region: 'onprem',
        inference_mode: 'ollama_local',
        supported_providers: [],
        max_concurrency: maxConcurrency,
      };
}

/** An admin call on the control port. */
export function adminCall(base: string, path: string, body?: unknown, method = 'POST', headers: Record<string, string> = {}) {
  return requestJson(base + path, { token: TEST_ADMIN_TOKEN, body, method, headers });
}

/** A PSK for registrations, with cloud workers allowed by the system preferences. */
export async function prepareRegistrations(base: string): Promise<string> {
  const psk = (await adminCall(base, '/v1/psks', { name: 'bench' })).secret as string;
  await adminCall(base, '/v1/preferences/system/default/cloud_allowed', { value: true }, 'PUT');
  return psk;
}

/** Registers `count` workers with `psk`, `parallel` at a time; answers their real worker JWTs, in order. */
export async function registerWorkers(
  base: string,
  psk: string,
  count: number,
  options: { prefix?: string; maxConcurrency: number; parallel?: number },
): Promise<string[]> {
  const tokens: string[] = new Array<string>(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: options.parallel ?? 1 }, async () => {
      while (next < count) {
        const i = next++;
        const body = capabilityReport(options.prefix ?? '', i, options.maxConcurrency);
        tokens[i] = (await requestJson(`${base}/register`, { body, headers: { 'x-cynode-psk': psk } })).token as string;
      }
    }),
  );
  return tokens;
}

/** One job submission with its Idempotency-Key. */
export function submitJob(base: string, tag: string, i: number) {
  return adminCall(
    base,
    '/v1/jobs',
    { task_id: `task-${tag}-${i}`, user_id: 'bench', payload: { kind: 'echo', input: i }, estimated_cost_usd: 0.01 },
    'POST',
    { 'idempotency-key': `${tag}-${i}` },
  );
}

/**
 * CPU (ms) the PostgreSQL backends serving database `name` have used so far, read from /proc:
 * the database's share of a job is part of what a job costs this machine. Backends that
 * ended before the reading are not counted, so take readings while the pool is open.
 */
export function databaseCpuMs(name: string): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.startsWith('postgres:') && cmdline.includes(` ${name} `)) total += processCpuMs(Number(entry));
    } catch {
      // The process ended while it was read.
    }
  }
  return total;
}

/** CPU of the gateway and of its database over one phase, per job. */
export function cpuMeter(pid: number, database: string) {
  const gateway0 = processCpuMs(pid);
  const database0 = databaseCpuMs(database);
  const load0 = process.cpuUsage();
  const idle0 = machineIdle();
  return (jobs: number) => {
    const round = (ms: number) => Math.round((ms / jobs) * 1000) / 1000;
    const load = process.cpuUsage(load0);
    const idle = machineIdle();
    return {
      gatewayMsPerJob: round(processCpuMs(pid) - gateway0),
      databaseMsPerJob: round(databaseCpuMs(database) - database0),
      // The clients of the run share the machine: what they cost, and what no one used.
      loadGeneratorMsPerJob: round((load.user + load.system) / 1000),
      idleShare: Math.round(((idle.idle - idle0.idle) / Math.max(1, idle.total - idle0.total)) * 100) / 100,
    };
  };
}

/** The machine's CPU time so far, in jiffies: idle (and waiting on I/O), and all of it (from /proc/stat). */
function machineIdle(): { idle: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { idle: fields[3]! + fields[4]!, total: fields.reduce((a, b) => a + b, 0) };
}

/**
 * What the database did for database `name` so far: transactions (each statement outside a
 * transaction is one) and rows written, from pg_stat_database. Backends publish their counts
 * within about a second of going idle, so a reading waits that long first.
 */
export async function databaseWork(client: pg.Client, name: string): Promise<Record<string, number>> {
  await new Promise((r) => setTimeout(r, 1100));
  const { rows } = await client.query(
    `SELECT xact_commit + xact_rollback AS transactions, tup_inserted AS inserted, tup_updated AS updated, tup_deleted AS deleted,
            (SELECT count(*) FROM decision_log WHERE path = 'cynode/dispatch/decision') AS decisions
       FROM pg_stat_database WHERE datname = $1`,
    [name],
  );
  return Object.fromEntries(Object.entries(rows[0] as Record<string, string>).map(([k, v]) => [k, Number(v)]));
}

/** Per job: what the database did between two readings of `databaseWork`. */
export function workPerJob(before: Record<string, number>, after: Record<string, number>, jobs: number): Record<string, number> {
  return Object.fromEntries(Object.keys(after).map((k) => [k, Math.round(((after[k]! - before[k]!) / jobs) * 100) / 100]));
}

/** The value of one series on the gateway's /metrics (`name` with its labels, as exposed); NaN when absent. */
export async function metricValue(base: string, series: string): Promise<number> {
  const text = await new Promise<string>((resolve, reject) =>
    http
      .get(`${base}/metrics`, { agent }, (res) => {
        let out = '';
        res.on('data', (c: Buffer) => (out += c.toString('utf8')));
        res.on('end', () => resolve(out));
      })
      .on('error', reject),
  );
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return Number(line?.slice(series.length + 1) ?? NaN);
}

/** Claims the gateway made so far: those that found jobs and those that found none. */
export async function claimCounts(base: string): Promise<Record<string, number>> {
  const [found, none] = await Promise.all([
    metricValue(base, 'cynode_job_claims_total{found="jobs"}'),
    metricValue(base, 'cynode_job_claims_total{found="none"}'),
  ]);
  return { claimsWithJobs: found || 0, claimsWithNone: none || 0 };
}
