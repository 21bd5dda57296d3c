/**
 * `npm run bench:soak`: one gateway process on PostgreSQL under steady mixed load for
 * BENCH_SOAK_SECONDS (default 600), printed as one JSON object. Open loop at BENCH_SOAK_RATE
 * operations/s in total (default: half of BENCH_SOAK_KNEE when given, else 150/s), split
 * evenly (BENCH_SOAK_MIX, weights `api:mcp:dispatch`, default `1:1:1`) between
 *  - api.call with the orchestrator token (direct routing) to a loopback fake OpenAI;
 *  - MCP `tools/call` of `artifacts.artifact_get` through `/mcp`, as a worker holding a lease
 *    on the task, to the artifact tool server;
 *  - job submissions, which BENCH_SOAK_WORKERS workers (default 4) long-poll, lease and
 *    report results for.
 * Clients hold at most BENCH_SOAK_SOCKETS connections per gateway port (default 64). Every
 * 10 s (30 times in a shorter run) the gateway's RSS and open file descriptors are sampled.
 * Verdicts: growth of both after the warm-up (the first 20% of the run; see footprintGrowth)
 * at most 10%, no errors, and the ledger balanced once the gateway has stopped (nothing left
 * reserved on any budget, and the task's spend equal to the cost the api.call audit recorded).
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { agent, freePort, load, percentiles, processCpuMs, processFootprint, requestJson, send, type Target } from './lib.js';
import { profileArgs, profiler, stageBreakdown } from './profile.js';
import {
  type BenchGateway,
  cloudWorkerReport,
  leaseTaskJob,
  registerWorkers,
  seedDirectRouting,
  startArtifactUpstream,
  startBenchGateway,
  startFakeProvider,
} from './setup.js';

const SECONDS = Number(process.env.BENCH_SOAK_SECONDS ?? 600);
const WORKERS = Number(process.env.BENCH_SOAK_WORKERS ?? 4);
// Client connections per gateway port, as a fixed set of callers would hold them: without a
// cap, a stall on the shared machine opens hundreds of sockets and the fd count measures the
// load generator instead of the gateway. A request finding all of them busy waits its turn
// (its latency includes the wait).
const SOCKETS_PER_PORT = Number(process.env.BENCH_SOAK_SOCKETS ?? 64);
const WARMUP_SHARE = 0.2;
// The share of the run each footprint window spans (right after the warm-up, and at the end).
const WINDOW_SHARE = 0.2;
// Every 10 s, or often enough for 30 samples in a shorter run.
const SAMPLE_MS = Math.min(10_000, (SECONDS * 1000) / 30);
const GROWTH_LIMIT_PERCENT = 10;
// Long polls as workers make them, short enough that the run ends soon after its last job.
const POLL_WAIT_MS = 5000;
const MAX_JOBS_PER_POLL = 8;
const DRAIN_LIMIT_MS = 60_000;
const PROFILE_DIR = join('build', 'bench-profiles', 'soak');
// One sample per 10 ms instead of V8's 1 ms: the profiler keeps every sample in the gateway's
// memory, and a thousand a second for ten minutes would be part of the RSS growth measured.
const PROFILE_INTERVAL_US = 10_000;
const API_TASK = 'soak-api';
const MCP_TASK = 'soak-mcp';
const JOB_TASK_PREFIX = 'soak-job-';

/** The offered rate in operations/s, and where it came from. */
function offeredRate(): { total: number; source: string } {
  if (process.env.BENCH_SOAK_RATE) return { total: Number(process.env.BENCH_SOAK_RATE), source: 'BENCH_SOAK_RATE' };
  const knee = Number(process.env.BENCH_SOAK_KNEE ?? 0);
  if (knee > 0) return { total: knee / 2, source: `half of BENCH_SOAK_KNEE=${knee}` };
  return { total: 150, source: 'default (no knee given)' };
}

/** The total rate split by the `api:mcp:dispatch` weights. */
function mixRates(total: number): { apiCall: number; mcp: number; dispatch: number } {
  const [api = 1, mcp = 1, dispatch = 1] = (process.env.BENCH_SOAK_MIX ?? '1:1:1').split(':').map(Number);
  const sum = api + mcp + dispatch;
  return { apiCall: (total * api) / sum, mcp: (total * mcp) / sum, dispatch: (total * dispatch) / sum };
}

function apiCallTarget(gw: BenchGateway): Target {
  const params = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 16 };
  const body = JSON.stringify({ provider: 'openai', operation: 'chat.completions', task_id: API_TASK, params });
  return {
    url: `${gw.control}/v1/api/call`,
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    body: () => body,
    ok: (text) => text.includes('"status":"ok"'),
  };
}

function mcpCall(name: string, args: Record<string, unknown>): string {
  return JSON.stringify({ jsonrpc: '2.0', id: randomUUID(), method: 'tools/call', params: { name, arguments: args } });
}

function mcpTarget(gw: BenchGateway, workerToken: string): Target {
  return {
    url: gw.mcp,
    headers: { authorization: `Bearer ${workerToken}`, accept: 'application/json, text/event-stream' },
    body: () => mcpCall('artifacts.artifact_get', { task_id: MCP_TASK, name: 'notes.md' }),
    ok: (text) => !text.includes('"error"') && !text.includes('"isError":true'),
  };
}

/** Job submissions, each its own task and Idempotency-Key (the key is the body's job number). */
function jobTarget(gw: BenchGateway): Target {
  let next = 0;
  return {
    url: `${gw.control}/v1/jobs`,
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    body: () =>
      JSON.stringify({ task_id: `${JOB_TASK_PREFIX}${next++}`, user_id: 'bench', payload: { kind: 'echo' }, estimated_cost_usd: 0.01 }),
    sign: async (body) => ({ 'idempotency-key': `soak-${(JSON.parse(body) as { task_id: string }).task_id}` }),
  };
}

/** Workers long-polling for jobs and reporting each as succeeded, until stopped. */
function startWorkers(gw: BenchGateway, tokens: string[]) {
  const stats = { polls: 0, emptyPolls: 0, completed: 0, errors: 0, firstError: undefined as string | undefined };
  let stopping = false;
  const fail = (err: Error) => {
    stats.errors++;
    stats.firstError ??= err.message;
  };
  const complete = (token: string, job: { job_id: string; lease_id: string }) =>
    requestJson(`${gw.control}/result`, {
      token,
      body: { job_id: job.job_id, lease_id: job.lease_id, status: 'succeeded', result: { ok: true } },
    }).then(() => void stats.completed++, fail);
  const work = async (token: string) => {
    while (!stopping) {
      const answer = await requestJson(`${gw.control}/jobs/poll`, {
        token,
        body: { max_jobs: MAX_JOBS_PER_POLL, wait_ms: POLL_WAIT_MS },
      }).catch((err: Error) => (fail(err), { jobs: [] }));
      const jobs = answer.jobs as { job_id: string; lease_id: string }[];
      stats.polls++;
      if (jobs.length === 0) stats.emptyPolls++;
      await Promise.all(jobs.map((job) => complete(token, job)));
    }
  };
  const running = Promise.all(tokens.map(work));
  return {
    stats,
    /** Resolves once `count` jobs have been reported, or after `limitMs`. */
    async drained(count: number, limitMs: number): Promise<boolean> {
      const deadline = performance.now() + limitMs;
      while (stats.completed < count && performance.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      return stats.completed >= count;
    },
    stop: async () => {
      stopping = true;
      await running;
    },
  };
}

/** Open file descriptors of a process by kind (socket, pipe, anon_inode, file): where growth comes from. */
function fdKinds(pid: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let kind = 'gone';
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      kind = /^(socket|pipe|anon_inode):/.exec(link)?.[1] ?? 'file';
    } catch {
      // closed between the listing and the read
    }
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}

interface Sample {
  atS: number;
  rssKb: number;
  fds: number;
  fdKinds: Record<string, number>;
  /** Gateway CPU over the interval that ended here, as a share of one core. */
  cpuPercent: number;
}

/** Samples the gateway's footprint now and every SAMPLE_MS until stopped. */
function startSampler(pid: number) {
  const started = performance.now();
  const samples: Sample[] = [];
  let lastCpu = processCpuMs(pid);
  let lastAt = started;
  const take = () => {
    const now = performance.now();
    const cpu = processCpuMs(pid);
    const cpuPercent = now > lastAt ? Math.round(((cpu - lastCpu) / (now - lastAt)) * 1000) / 10 : 0;
    samples.push({ atS: Math.round(now - started) / 1000, ...processFootprint(pid), fdKinds: fdKinds(pid), cpuPercent });
    lastCpu = cpu;
    lastAt = now;
  };
  take();
  const timer = setInterval(take, SAMPLE_MS);
  return {
    samples,
    /** Takes the last sample and stops. */
    stop: () => {
      clearInterval(timer);
      take();
    },
  };
}

const percent = (from: number, to: number) => (from > 0 ? Math.round(((to - from) / from) * 1000) / 10 : 0);

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.floor((s.length - 1) / 2)]!;
}

/**
 * Growth of RSS and fds over the run after its warm-up: the median of the samples in the last
 * fifth of the run against the median of those in the fifth right after the warm-up. Medians,
 * because single samples swing with the garbage collector and with the connections in use at
 * that instant; a leak moves both windows apart whatever the noise. The peak is against the
 * early median too.
 */
function footprintGrowth(samples: Sample[], warmupS: number, windowS: number) {
  const endS = samples[samples.length - 1]!.atS;
  const after = samples.filter((s) => s.atS >= warmupS);
  const inEarly = samples.filter((s) => s.atS >= warmupS && s.atS <= warmupS + windowS);
  const early = inEarly.length > 0 ? inEarly : [after[0] ?? samples[samples.length - 1]!];
  const late = samples.filter((s) => s.atS >= endS - windowS);
  const of = (window: Sample[], key: 'rssKb' | 'fds') => median(window.map((s) => s[key]));
  const peak = (key: 'rssKb' | 'fds') => Math.max(...after.map((s) => s[key]));
  const earlyMedian = { rssKb: of(early, 'rssKb'), fds: of(early, 'fds'), samples: early.length };
  const lateMedian = { rssKb: of(late, 'rssKb'), fds: of(late, 'fds'), samples: late.length };
  return {
    windows: { earlyS: [warmupS, warmupS + windowS], lateS: [Math.max(0, endS - windowS), endS] },
    earlyMedian,
    lateMedian,
    rssGrowthPercent: percent(earlyMedian.rssKb, lateMedian.rssKb),
    fdsGrowthPercent: percent(earlyMedian.fds, lateMedian.fds),
    peakRssGrowthPercent: percent(earlyMedian.rssKb, peak('rssKb')),
    peakFdsGrowthPercent: percent(earlyMedian.fds, peak('fds')),
  };
}

/** Error-level lines (pino level 50 and above) the gateway wrote, and the first of them. */
function gatewayErrorLines(output: string): { errors: number; warnings: number; first?: string } {
  let errors = 0;
  let warnings = 0;
  let first: string | undefined;
  for (const line of output.split('\n')) {
    const level = Number(/"level":(\d+)/.exec(line)?.[1] ?? 0);
    if (level >= 50) {
      errors++;
      first ??= line.slice(0, 400);
    } else if (level === 40) warnings++;
  }
  return { errors, warnings, ...(first && { first }) };
}

/**
 * The ledger after the gateway stopped, read from the tables: what every budget still holds
 * reserved, the api.call task's spend, and the cost the final gate's audit rows recorded for
 * that task (api_audit, gate 'egress', as the spend report sums it), all in micro-USD.
 */
async function readLedger(databaseUrl: string) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const reserved = await client.query(`SELECT coalesce(sum(reserved_micros), 0)::text AS micros, count(*)::int AS budgets FROM budgets`);
    const spent = await client.query(
      `SELECT coalesce(sum(spent_micros), 0)::text AS micros FROM budgets WHERE scope = 'task' AND subject_id = $1`,
      [API_TASK],
    );
    const audited = await client.query(
      `SELECT coalesce(round(sum(cost_usd) * 1000000), 0)::text AS micros, count(*)::int AS calls,
              count(*) FILTER (WHERE outcome = 'ok')::int AS ok
         FROM api_audit WHERE gate = 'egress' AND task_id = $1`,
      [API_TASK],
    );
    const reservations = await client.query(`SELECT state, count(*)::int AS n FROM budget_reservations GROUP BY state`);
    const jobs = await client.query(`SELECT state, count(*)::int AS n FROM jobs WHERE task_id LIKE $1 GROUP BY state`, [
      `${JOB_TASK_PREFIX}%`,
    ]);
    const reservedMicros = Number(reserved.rows[0].micros);
    const spentMicros = Number(spent.rows[0].micros);
    const auditedMicros = Number(audited.rows[0].micros);
    const byState = Object.fromEntries(reservations.rows.map((r) => [r.state, r.n]));
    const unsettled = (byState.held ?? 0) + (byState.pending ?? 0);
    return {
      ledger: {
        reservedMicrosOnAllBudgets: reservedMicros,
        taskSpentMicros: spentMicros,
        auditedCostMicros: auditedMicros,
        auditedCalls: audited.rows[0].calls as number,
        auditedOkCalls: audited.rows[0].ok as number,
        reservationsByState: byState,
        balanced: reservedMicros === 0 && unsettled === 0 && spentMicros === auditedMicros,
        // Micro-USD that do not add up: still reserved, plus spend the audit does not account for.
        imbalanceMicros: reservedMicros + Math.abs(spentMicros - auditedMicros),
      },
      jobsByState: Object.fromEntries(jobs.rows.map((r) => [r.state, r.n])) as Record<string, number>,
    };
  } finally {
    await client.end();
  }
}

/**
 * What the gateway got through against what was offered. An open loop that the gateway (or a
 * machine busy with other work) cannot keep up with builds a backlog, and the backlog grows
 * the footprint: growth measured then is not a leak.
 */
function throughput(operations: number, loadSeconds: number, offeredPerSecond: number) {
  const completedPerSecond = Math.round((operations / loadSeconds) * 10) / 10;
  const keptUp = completedPerSecond >= offeredPerSecond * 0.95;
  return {
    completedPerSecond,
    keptUp,
    ...(!keptUp && { note: 'the offered rate was not kept up with: requests queued, and the footprint grew with the backlog' }),
  };
}

/** The conditions every verdict names; a rate not kept up with is said in the table too. */
function runContext(ratePerSecond: number, keptUp: boolean): string {
  return `${SECONDS} s at ${Math.round(ratePerSecond)}/s mixed${keptUp ? '' : ' (offered rate not kept up with)'}`;
}

/** One run of a load against a target, summarised. */
function summary(run: Awaited<ReturnType<typeof load>>) {
  return {
    ok: run.latencies.length,
    errors: run.errors,
    ...(run.firstError && { firstError: run.firstError }),
    ms: percentiles(run.latencies),
  };
}

/** The soak row of the targets, one verdict per condition it names. */
function verdicts(growth: ReturnType<typeof footprintGrowth>, errors: number, imbalanceMicros: number, context: string) {
  const row = (measure: string, cynode: number, target: string, met: boolean) => ({
    path: 'soak',
    measure: `${measure}, ${context}`,
    cynode,
    peer: null,
    ratio: null,
    target,
    met,
  });
  return [
    row(
      'gateway RSS growth after warm-up, %',
      growth.rssGrowthPercent,
      `≤ ${GROWTH_LIMIT_PERCENT}%`,
      growth.rssGrowthPercent <= GROWTH_LIMIT_PERCENT,
    ),
    row(
      'gateway open fds growth after warm-up, %',
      growth.fdsGrowthPercent,
      `≤ ${GROWTH_LIMIT_PERCENT}%`,
      growth.fdsGrowthPercent <= GROWTH_LIMIT_PERCENT,
    ),
    row('errors, count', errors, '0', errors === 0),
    row('ledger imbalance (still reserved + spent vs audited cost), micro-USD', imbalanceMicros, '0 (balanced)', imbalanceMicros === 0),
  ];
}

/** The three paths answer before the clock starts; the artifact the MCP calls read is written first. */
async function checkPaths(gw: BenchGateway, targets: Target[], mcpToken: string): Promise<void> {
  const put = mcpCall('artifacts.artifact_put', { task_id: MCP_TASK, name: 'notes.md', content: 'soak notes' });
  await send({ ...mcpTarget(gw, mcpToken), body: () => put }, false);
  for (const target of targets) await send(target, false).catch((err: Error) => Promise.reject(new Error(`${target.url}: ${err.message}`)));
}

/** The processes of a soak: the fake provider, a fresh database, the gateway, the artifact tool server. */
async function startStack(profiled: boolean) {
  // What is running so far, stopped in reverse order at the end or when a later start fails.
  const started: (() => Promise<unknown> | void)[] = [];
  const stop = async () => {
    for (const end of started.reverse()) await end();
  };
  try {
    const fake = await startFakeProvider();
    started.push(fake.stop);
    const db = await createTestDatabase();
    started.push(db.drop);
    const upstreamPort = await freePort();
    const gw = await startBenchGateway({
      databaseUrl: db.url,
      providerUrl: fake.url,
      mcpUpstreams: { artifacts: `http://127.0.0.1:${upstreamPort}/mcp` },
      // The MCP agent's lease and every worker token outlive the run (both at most an hour).
      env: { CYNODE_JOB_LEASE_TTL_MS: '3600000', CYNODE_WORKER_TOKEN_TTL_MS: '3600000' },
      // V8's profiler keeps its samples in memory: fewer of them (perf keeps its own, outside the gateway).
      nodeArgs: profiled
        ? [...profileArgs(PROFILE_DIR), ...(profiler() === 'v8' ? [`--cpu-prof-interval=${PROFILE_INTERVAL_US}`] : [])]
        : [],
    });
    started.push(gw.stop);
    started.push((await startArtifactUpstream(db.url, gw, upstreamPort)).stop);
    return { db, gw, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Budget, credential, workers and the MCP agent's lease; the three targets, checked; the dispatch workers running. */
async function prepare(gw: BenchGateway) {
  await seedDirectRouting(gw, API_TASK);
  // The MCP agent leases its task's job before the dispatch workers exist to take it.
  const [mcpToken] = await registerWorkers(gw, [cloudWorkerReport('soak-mcp-agent')]);
  await leaseTaskJob(gw, mcpToken!, MCP_TASK);
  const workerTokens = await registerWorkers(
    gw,
    Array.from({ length: WORKERS }, (_, i) => cloudWorkerReport(`soak-worker-${i}`)),
  );
  const targets = { apiCall: apiCallTarget(gw), mcp: mcpTarget(gw, mcpToken!), dispatch: jobTarget(gw) };
  const workers = startWorkers(gw, workerTokens);
  await checkPaths(gw, Object.values(targets), mcpToken!);
  // The one job checkPaths submitted.
  if (!(await workers.drained(1, 10_000))) throw new Error('the dispatch workers did not finish the first job within 10 s');
  return { targets, workers };
}

/** The run itself: the three loads side by side, sampled, then the workers' drain of what was submitted. */
async function soak(gw: BenchGateway, prepared: Awaited<ReturnType<typeof prepare>>, rates: ReturnType<typeof mixRates>) {
  const { targets, workers } = prepared;
  const completedBefore = workers.stats.completed;
  const cpuBefore = processCpuMs(gw.pid);
  const sampler = startSampler(gw.pid);
  const started = performance.now();
  const [apiCall, mcp, dispatch] = await Promise.all([
    load(targets.apiCall, false, rates.apiCall, SECONDS),
    load(targets.mcp, false, rates.mcp, SECONDS),
    load(targets.dispatch, false, rates.dispatch, SECONDS),
  ]);
  const loadSeconds = (performance.now() - started) / 1000;
  sampler.stop();
  const drained = await workers.drained(completedBefore + dispatch.latencies.length, DRAIN_LIMIT_MS);
  const cpuMs = processCpuMs(gw.pid) - cpuBefore;
  await workers.stop();
  return { apiCall, mcp, dispatch, loadSeconds, samples: sampler.samples, drained, cpuMs, workerStats: workers.stats };
}

async function main() {
  const rate = offeredRate();
  const rates = mixRates(rate.total);
  const profiled = process.env.BENCH_SOAK_PROFILE !== '0';
  agent.maxSockets = SOCKETS_PER_PORT;
  const stack = await startStack(profiled);
  const { gw } = stack;
  try {
    const run = await soak(gw, await prepare(gw), rates);
    const { apiCall, mcp, dispatch } = run;
    const operations = apiCall.latencies.length + mcp.latencies.length + dispatch.latencies.length;
    const exitCode = await gw.stop();
    const logs = gatewayErrorLines(gw.process.output());
    const { ledger, jobsByState } = await readLedger(stack.db.url);
    // Every job submitted, the one of the path check included, must have succeeded.
    const jobsNotSucceeded = dispatch.latencies.length + 1 - (jobsByState.succeeded ?? 0);
    const requestErrors = apiCall.errors + mcp.errors + dispatch.errors + run.workerStats.errors;
    const errors = requestErrors + Math.max(0, jobsNotSucceeded) + logs.errors + (exitCode === 0 ? 0 : 1);
    const growth = footprintGrowth(run.samples, SECONDS * WARMUP_SHARE, SECONDS * WINDOW_SHARE);
    const pace = throughput(operations, run.loadSeconds, rate.total);
    const result = {
      bench: 'soak',
      seconds: SECONDS,
      warmupSeconds: SECONDS * WARMUP_SHARE,
      loadSeconds: Math.round(run.loadSeconds * 10) / 10,
      rate: { totalPerSecond: rate.total, source: rate.source, perSecond: rates },
      throughput: pace,
      operations: {
        apiCall: summary(apiCall),
        mcp: summary(mcp),
        dispatch: {
          submitted: summary(dispatch),
          workers: WORKERS,
          ...run.workerStats,
          drainedWithinLimit: run.drained,
          jobsByState,
          jobsNotSucceeded,
        },
      },
      gatewayCpuMsPerOperation: operations > 0 ? Math.round((run.cpuMs / operations) * 1000) / 1000 : null,
      footprint: { ...growth, samples: run.samples },
      errors: { total: errors, requests: requestErrors, jobsNotSucceeded, gatewayErrorLogLines: logs, gatewayExitCode: exitCode },
      ledger,
      verdicts: verdicts(growth, errors, ledger.imbalanceMicros, runContext(rate.total, pace.keptUp)),
      cpuByStage: profiled
        ? {
            note: `sampled${profiler() === 'v8' ? ` every ${PROFILE_INTERVAL_US / 1000} ms` : ''} over the gateway's whole life (start-up and seeding included), per operation of the run`,
            ...stageBreakdown(PROFILE_DIR, operations),
          }
        : { note: 'not profiled (BENCH_SOAK_PROFILE=0)' },
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await stack.stop();
    agent.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
