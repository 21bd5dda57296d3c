/**
 * `npm run bench:dispatch`: the Worker API under load, printed as one JSON object.
 *  - gateway: a real gateway process on PostgreSQL; 50 workers (HTTP clients on 127.0.0.1)
 *    long-poll `POST /jobs/poll`, and post `POST /result` for every job, while an
 *    orchestrator submits jobs with Idempotency-Keys. Every claim asks the dispatch policy
 *    (Wasm) about each candidate and records the decision. Reports jobs/s end to end with
 *    submissions running alongside (first submission to last accepted result), drain jobs/s
 *    (queue filled first: poll, lease, result), claim/result latency p50/p99, and checks
 *    (no job leased twice, every job succeeded), and the CPU one job costs the gateway process and
 *    its PostgreSQL backends in each phase (read from /proc). Targets: ≥ 1,000 jobs/s end to
 *    end, ≥ 2,000 jobs/s drain. The gateway runs under the V8 profiler (BENCH_PROFILE=0 turns it
 *    off), and `cpuByStage` says where its CPU went. Each phase also reports what the load
 *    generator (this process) and nobody (idle) used of the machine it shares with the gateway.
 *    BENCH_JOBS sets the jobs per phase, BENCH_WARM the warm-up's, and BENCH_DISPATCH_DRAIN=0
 *    stops after the end-to-end phase, so the profile covers it alone.
 *  - peer: the same schema driven directly with SQL by 50 connections (claim with
 *    FOR UPDATE SKIP LOCKED, complete), no HTTP, no policy: the database's own ceiling
 *    on this machine, so the ratio shows what the gateway costs on top.
 */
import { join } from 'node:path';
import pg from 'pg';
import { ensureBundle } from '../test/helpers/bundle.js';
import { startGatewayProcess } from '../test/helpers/gateway.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import {
  claimCounts,
  cpuMeter,
  databaseCpuMs,
  databaseWork,
  workPerJob,
  prepareRegistrations,
  registerWorkers,
  submitJob,
} from './jobs-common.js';
import { agent, percentiles, requestJson } from './lib.js';
import { profileArgs, stageBreakdown } from './profile.js';

const WORKERS = 50;
const JOBS = Number(process.env.BENCH_JOBS ?? 6000);
const MAX_JOBS_PER_POLL = 8;
// Jobs of the warm-up before the measured phases.
const WARM = Number(process.env.BENCH_WARM ?? 1000);
// Long polls as the reference worker makes them (it waits 25 s); shorter so a phase ends soon after its last job.
const POLL_WAIT_MS = 5000;
// Concurrent submissions from the orchestrator.
const SUBMITTERS = 32;
const PROFILE_DIR = join('build', 'bench-profiles', 'dispatch');
const TARGET_END_TO_END = 1000;
const TARGET_DRAIN = 2000;

async function gatewayRun(): Promise<Record<string, unknown>> {
  const db = await createTestDatabase();
  const gw = await startGatewayProcess(
    {
      DATABASE_URL: db.url,
      CYNODE_BUNDLE: await ensureBundle(),
      CYNODE_LOG_LEVEL: 'info',
      CYNODE_DATABASE_POOL_MAX: '20',
    },
    [],
    process.env.BENCH_PROFILE === '0' ? [] : profileArgs(PROFILE_DIR),
  );
  const base = `http://127.0.0.1:${gw.ports.control}`;
  const pgc = new pg.Client({ connectionString: db.url });
  await pgc.connect();
  try {
    const psk = await prepareRegistrations(base);
    const tokens = await registerWorkers(base, psk, WORKERS, { maxConcurrency: 16 });

    const submitLatency: number[] = [];
    const submit = async (n: number, concurrency: number, tag: string) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < n) {
            const i = next++;
            const t0 = performance.now();
            await submitJob(base, tag, i);
            submitLatency.push(performance.now() - t0);
          }
        }),
      );
    };

    const drive = async (expected: number, onDone?: () => void) => {
      const claimLatency: number[] = [];
      const resultLatency: number[] = [];
      let done = 0;
      let emptyPolls = 0;
      let polls = 0;
      let lastResultAt = 0;
      await Promise.all(
        tokens.map(async (token) => {
          while (done < expected) {
            const t0 = performance.now();
            polls++;
            const { jobs } = (await requestJson(`${base}/jobs/poll`, {
              token,
              body: { max_jobs: MAX_JOBS_PER_POLL, wait_ms: POLL_WAIT_MS },
            })) as { jobs: { job_id: string; lease_id: string }[] };
            if (jobs.length === 0) {
              emptyPolls++;
              continue;
            }
            claimLatency.push(performance.now() - t0);
            await Promise.all(
              jobs.map(async (j) => {
                const r0 = performance.now();
                await requestJson(`${base}/result`, {
                  token,
                  body: { job_id: j.job_id, lease_id: j.lease_id, status: 'succeeded', result: { ok: true } },
                });
                resultLatency.push(performance.now() - r0);
                if (++done === expected) onDone?.();
                lastResultAt = performance.now();
              }),
            );
          }
        }),
      );
      return { claimLatency, resultLatency, emptyPolls, polls, lastResultAt, done };
    };

    // Warm-up: JIT, pools, Wasm, run as the end-to-end phase is. With 300 jobs the optimizing
    // compiler was still at work in the measured phase (helper threads: 0.25 ms per job).
    await Promise.all([submit(WARM, SUBMITTERS, 'warm'), drive(WARM)]);

    // End to end: submissions and work at the same time.
    submitLatency.length = 0;
    const e2eWork = { ...(await databaseWork(pgc, db.name)), ...(await claimCounts(base)) };
    const e2eCpu = cpuMeter(gw.child.pid!, db.name);
    const e2eStart = performance.now();
    // CPU is read when the last result is in: the polls still waiting after it are not the run.
    let e2eCpuPerJob: ReturnType<typeof e2eCpu> | undefined;
    const [, e2e] = await Promise.all([submit(JOBS, SUBMITTERS, 'e2e'), drive(JOBS, () => (e2eCpuPerJob = e2eCpu(JOBS)))]);
    const e2eMs = e2e.lastResultAt - e2eStart;
    const fillWork = { ...(await databaseWork(pgc, db.name)), ...(await claimCounts(base)) };
    const e2eSubmitMs = percentiles(submitLatency);

    // Drain: the queue is full before the workers start (BENCH_DISPATCH_DRAIN=0 skips it, so the profile covers end to end alone).
    if (process.env.BENCH_DISPATCH_DRAIN === '0')
      return {
        workers: WORKERS,
        jobs: JOBS,
        endToEnd: {
          jobsPerSecond: Math.round((JOBS / e2eMs) * 1000),
          cpu: e2eCpuPerJob,
          database: workPerJob(e2eWork, fillWork, JOBS),
          polls: e2e.polls,
        },
        drain: { jobsPerSecond: NaN },
        jobsProfiled: WARM + JOBS,
      };
    const fillCpu = cpuMeter(gw.child.pid!, db.name);
    const fillStart = performance.now();
    await submit(JOBS, SUBMITTERS, 'drain');
    const submitMs = performance.now() - fillStart;
    const fillCpuPerJob = fillCpu(JOBS);
    const drainWork = { ...(await databaseWork(pgc, db.name)), ...(await claimCounts(base)) };
    const drainCpu = cpuMeter(gw.child.pid!, db.name);
    const drainStart = performance.now();
    let drainCpuPerJob: ReturnType<typeof drainCpu> | undefined;
    const drain = await drive(JOBS, () => (drainCpuPerJob = drainCpu(JOBS)));
    const drainMs = drain.lastResultAt - drainStart;
    const endWork = { ...(await databaseWork(pgc, db.name)), ...(await claimCounts(base)) };

    const { rows } = await pgc.query(`SELECT state, count(*)::int AS n FROM jobs GROUP BY state`);
    const decisions = await pgc.query(`SELECT count(*)::int AS n FROM decision_log WHERE path = 'cynode/dispatch/decision'`);
    const twice = await pgc.query(`SELECT count(*)::int AS n FROM (SELECT job_id FROM job_attempts GROUP BY job_id HAVING count(*) > 1) x`);
    return {
      workers: WORKERS,
      jobs: JOBS,
      endToEnd: {
        jobsPerSecond: Math.round((JOBS / e2eMs) * 1000),
        seconds: Math.round(e2eMs) / 1000,
        cpu: e2eCpuPerJob,
        database: workPerJob(e2eWork, fillWork, JOBS),
        polls: e2e.polls,
        emptyPolls: e2e.emptyPolls,
        // Round trip of polls that came back with jobs; includes the time a long poll waited for work.
        pollWithJobsMs: percentiles(e2e.claimLatency),
        resultMs: percentiles(e2e.resultLatency),
        submitMs: e2eSubmitMs,
      },
      // Work waiting in the queue: a poll's round trip is the claim (lock, decide, lease).
      drain: {
        jobsPerSecond: Math.round((JOBS / drainMs) * 1000),
        cpu: drainCpuPerJob,
        database: workPerJob(drainWork, endWork, JOBS),
        polls: drain.polls,
        emptyPolls: drain.emptyPolls,
        claimMs: percentiles(drain.claimLatency),
        resultMs: percentiles(drain.resultLatency),
      },
      submissions: { perSecond: Math.round((JOBS / submitMs) * 1000), cpu: fillCpuPerJob, database: workPerJob(fillWork, drainWork, JOBS) },
      // All three phases and the warm-up: what the profile covers.
      jobsProfiled: WARM + 2 * JOBS,
      checks: {
        jobsByState: Object.fromEntries(rows.map((r) => [r.state, r.n])),
        dispatchDecisionsRecorded: decisions.rows[0].n,
        jobsLeasedMoreThanOnce: twice.rows[0].n,
      },
    };
  } finally {
    await pgc.end();
    gw.child.kill('SIGTERM');
    await gw.exited;
    await db.drop();
  }
}

/**
 * A peer query that waits out a server full of other clients (53300, `too many clients`): on a
 * machine the benchmark shares, a connection the pool could not open yet is retried, not fatal.
 */
async function peerQuery(pool: pg.Pool, text: string, values: unknown[]): Promise<pg.QueryResult> {
  for (let tries = 0; ; tries++) {
    try {
      return await pool.query(text, values);
    } catch (err) {
      if ((err as { code?: string }).code !== '53300' || tries >= 200) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** The peer: the same tables driven by SQL alone, 50 connections claiming and completing. */
async function sqlPeer(): Promise<Record<string, unknown>> {
  const db = await createTestDatabase();
  // The real schema: migrate through a short-lived gateway-less knex run.
  const { openDatabase, migrateLatest } = await import('../src/storage/index.js');
  const pino = (await import('pino')).default;
  const d = await openDatabase(
    { url: db.url, dataDir: '', poolMax: 2, connectTimeoutMs: 5000, startupTimeoutMs: 0 },
    pino({ level: 'silent' }),
  );
  await migrateLatest(d.knex);
  await d.close();
  const pool = new pg.Pool({ connectionString: db.url, max: WORKERS });
  pool.on('error', () => undefined); // idle connections cut when the database is dropped
  try {
    await pool.query(
      `INSERT INTO jobs (id, task_id, user_id, requirements, preferences, estimated_cost_usd, payload, priority, max_attempts, timeout_ms, state, available_at, submitted_by, created_at, updated_at)
       SELECT gen_random_uuid(), 'task-' || g, 'bench', '{}', '{}', 0.01, '{"kind":"echo"}', 0, 3, 600000, 'queued', now(), 'bench', now(), now()
       FROM generate_series(1, $1) g`,
      [JOBS],
    );
    let done = 0;
    const claimLatency: number[] = [];
    const database0 = databaseCpuMs(db.name);
    const started = performance.now();
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        while (done < JOBS) {
          const t0 = performance.now();
          const { rows } = await peerQuery(
            pool,
            `UPDATE jobs SET state = 'leased', lease_id = gen_random_uuid(), leased_by = $1, lease_expires_at = now() + interval '30 seconds', attempts = attempts + 1
              WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' ORDER BY priority DESC, available_at, created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
              RETURNING id, lease_id`,
            [`w-${w}`, MAX_JOBS_PER_POLL],
          );
          if (rows.length === 0) {
            if (done >= JOBS) break;
            continue;
          }
          claimLatency.push(performance.now() - t0);
          await Promise.all(
            rows.map((r) =>
              peerQuery(pool, `UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = $1 AND lease_id = $2`, [
                r.id,
                r.lease_id,
              ]),
            ),
          );
          done += rows.length;
        }
      }),
    );
    const ms = performance.now() - started;
    const databaseMsPerJob = Math.round(((databaseCpuMs(db.name) - database0) / JOBS) * 1000) / 1000;
    return { jobsPerSecond: Math.round((JOBS / ms) * 1000), cpu: { databaseMsPerJob }, claimMs: percentiles(claimLatency) };
  } finally {
    await pool.end();
    await db.drop();
  }
}

const gateway = await gatewayRun();
// The gateway's figures stand on their own: a peer that fails is reported, not fatal.
const peer = await sqlPeer().catch((err: unknown) => ({ jobsPerSecond: NaN, error: String((err as Error)?.message ?? err) }));
agent.destroy();
const drain = (gateway.drain as { jobsPerSecond: number }).jobsPerSecond;
const e2e = (gateway.endToEnd as { jobsPerSecond: number }).jobsPerSecond;
const ratio = (x: number) => Math.round((x / (peer.jobsPerSecond as number)) * 100) / 100;
const verdicts = [
  {
    path: 'dispatch',
    measure: 'jobs/s end to end with concurrent submission, 50 workers',
    cynode: e2e,
    peer: peer.jobsPerSecond as number,
    ratio: ratio(e2e),
    target: `>= ${TARGET_END_TO_END} jobs/s`,
    met: e2e >= TARGET_END_TO_END,
  },
  {
    path: 'dispatch',
    measure: 'jobs/s drain (queue filled first), 50 workers',
    cynode: drain,
    peer: peer.jobsPerSecond as number,
    ratio: ratio(drain),
    target: `>= ${TARGET_DRAIN} jobs/s`,
    met: drain >= TARGET_DRAIN,
  },
];
const profiled = process.env.BENCH_PROFILE !== '0';
console.log(
  JSON.stringify(
    {
      bench: 'dispatch',
      gateway,
      peer: { name: 'plain SQL queue (same schema, no HTTP, no policy)', ...peer },
      verdicts,
      ...(profiled && {
        cpuByStage: {
          note: 'sampled over the whole run (registration, warm-up, end to end, fill, drain), per job',
          ...stageBreakdown(PROFILE_DIR, gateway.jobsProfiled as number),
        },
      }),
    },
    null,
    2,
  ),
);
