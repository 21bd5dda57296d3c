/**
 * `npm run bench:replicas`: gateway processes on one PostgreSQL, printed as one JSON object.
 *  - killSwitch: 3 replicas. The kill switch (`cloud_routing.enabled`) is flipped through
 *    replica 0, off and on, BENCH_FLIPS times (100). For each flip, the time from sending
 *    the PUT until all 3 replicas enforce it, each observed by a dispatch decision
 *    (`POST /v1/data/cynode/dispatch/decision` for a cloud worker: `cloud_routing_disabled`
 *    among its reasons or not) asked in a tight loop. Target: p99 ≤ 1 s.
 *  - dispatch: the same job load against 1 replica, then 3: BENCH_JOBS jobs submitted
 *    (round robin over the replicas), then drained by 30 workers (registered with a PSK,
 *    each polling and posting results with its own JWT to its replica, round robin). Jobs/s
 *    for each, the ratio 3/1, and jobs leased more than once (must be 0). The 1-replica run
 *    is the comparison; the two take turns for BENCH_ROUNDS rounds (2: 1, 3, 1, 3 replicas)
 *    and each reports the mean. All replicas share this machine's cores (`cpus` in the
 *    output), so on a small machine the ratio shows the cost of coordination, not capacity.
 * Everything on 127.0.0.1; one fresh database for the whole run, dropped at the end.
 */
import { cpus, loadavg } from 'node:os';
import pg from 'pg';
import { ensureBundle } from '../test/helpers/bundle.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { CLOUD_DISPATCH_INPUT } from '../test/helpers/fixtures.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { type Replicas, startReplicas } from '../test/helpers/replicas.js';
import { agent, percentiles, requestJson } from './lib.js';

const FLIPS = Number(process.env.BENCH_FLIPS ?? 100);
const JOBS = Number(process.env.BENCH_JOBS ?? 6000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const WORKERS = 30;
const SUBMITTERS = 24;
// JIT, pools and Wasm warm on every replica before the clock starts.
const WARMUP_JOBS = 600;
const MAX_JOBS_PER_POLL = 8;
// Short long polls, so a phase ends soon after its last job.
const POLL_WAIT_MS = 2000;
const TARGET_P99_MS = 1000;
// A flip not seen everywhere within this long, or a drain that stops making progress, is a
// failure, not waited for.
const FLIP_LIMIT_MS = 15_000;
const STALL_LIMIT_MS = 60_000;

const admin = (url: string, body?: unknown, method?: string, headers?: Record<string, string>) =>
  requestJson(url, { token: TEST_ADMIN_TOKEN, body, method, headers });

/** Whether the replica at `base` now denies cloud dispatch for the kill switch. */
async function killSwitchOn(base: string): Promise<boolean> {
  const answer = await admin(`${base}/v1/data/cynode/dispatch/decision`, { input: CLOUD_DISPATCH_INPUT });
  const reasons = answer.result?.reasons;
  if (!Array.isArray(reasons)) throw new Error(`no decision from ${base}: ${JSON.stringify(answer).slice(0, 200)}`);
  return reasons.includes('cloud_routing_disabled');
}

/** Flips the kill switch through the first replica; per flip, ms until every replica enforces it. */
async function killSwitch(urls: string[]): Promise<Record<string, unknown>> {
  const setting = `${urls[0]}/v1/settings/cloud_routing.enabled`;
  await admin(setting, { value: true }, 'PUT');
  const perFlip: number[] = [];
  const perReplica: number[][] = urls.map(() => []);
  const putMs: number[] = [];
  const probeMs: number[] = [];
  for (let i = 0; i < FLIPS; i++) {
    const off = i % 2 === 0;
    const started = performance.now();
    const put = admin(setting, { value: !off }, 'PUT').then(() => putMs.push(performance.now() - started));
    const seen = await Promise.all(
      urls.map(async (base, r) => {
        for (;;) {
          const asked = performance.now();
          const on = await killSwitchOn(base);
          probeMs.push(performance.now() - asked);
          if (on === off) break;
          if (performance.now() - started > FLIP_LIMIT_MS)
            throw new Error(`flip ${i}: ${base} did not enforce it within ${FLIP_LIMIT_MS} ms`);
        }
        const ms = performance.now() - started;
        perReplica[r]!.push(ms);
        return ms;
      }),
    );
    await put;
    perFlip.push(Math.max(...seen));
  }
  await admin(setting, { value: true }, 'PUT');
  const all = percentiles(perFlip);
  return {
    replicas: urls.length,
    flips: FLIPS,
    // The settings poll (src/main.ts) is the fallback; figures well under it are NOTIFY's.
    note: 'LISTEN/NOTIFY on; the polling fallback re-reads settings every 5 s',
    // From sending the PUT to the first probe answer that shows the new setting, on the slowest replica.
    untilAllReplicasMs: all,
    perReplicaMs: perReplica.map((s, r) => ({ replica: r, ...(r === 0 && { note: 'the replica the PUT went to' }), ...percentiles(s) })),
    putMs: percentiles(putMs),
    // One probe's round trip: the resolution of the figures above.
    probeMs: percentiles(probeMs),
    flipsOverTarget: perFlip.filter((ms) => ms > TARGET_P99_MS).length,
    target: { p99Ms: TARGET_P99_MS, met: all.p99 <= TARGET_P99_MS },
  };
}

/** `WORKERS` workers, half cloud half local, each registered on (and bound to) one of `urls`. */
async function registerWorkers(urls: string[], label: string): Promise<{ base: string; token: string }[]> {
  const psk = (await admin(`${urls[0]}/v1/psks`, { name: `bench-${label}` })).secret as string;
  const workers: { base: string; token: string }[] = [];
  for (let i = 0; i < WORKERS; i++) {
    const base = urls[i % urls.length]!;
    const report =
      i % 2 === 0
        ? {
            node_id: `${label}-cloud-${i}`,
            labels: ['cloud', 'provider_openai'],
            region: 'us-east-1',
            inference_mode: 'provider_api',
            supported_providers: ['openai'],
            max_concurrency: 16,
          }
        : {
            node_id: `${label}-local-${i}`,
            labels: ['local'],
            region: 'onprem',
            inference_mode: 'ollama_local',
            supported_providers: [],
            max_concurrency: 16,
          };
    const { token } = await requestJson(`${base}/register`, { body: report, headers: { 'x-cynode-psk': psk } });
    workers.push({ base, token: String(token) });
  }
  return workers;
}

/** Submits `n` jobs tagged `tag`, round robin over `urls`; returns the ms it took. */
async function submit(urls: string[], n: number, tag: string): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: SUBMITTERS }, async () => {
      while (next < n) {
        const i = next++;
        const body = { task_id: `task-${tag}-${i}`, user_id: 'bench', payload: { kind: 'echo', input: i }, estimated_cost_usd: 0.01 };
        await admin(`${urls[i % urls.length]}/v1/jobs`, body, 'POST', { 'idempotency-key': `${tag}-${i}` });
      }
    }),
  );
  return performance.now() - started;
}

/** Workers poll, lease and complete until `expected` results are accepted; counts leases seen twice. */
async function drain(workers: { base: string; token: string }[], expected: number) {
  const leased = new Set<string>();
  let leasedAgain = 0;
  let done = 0;
  const started = performance.now();
  let lastResultAt = started;
  await Promise.all(
    workers.map(async ({ base, token }) => {
      while (done < expected) {
        if (performance.now() - lastResultAt > STALL_LIMIT_MS)
          throw new Error(`no result accepted for ${STALL_LIMIT_MS} ms; ${done} of ${expected} done`);
        const { jobs } = (await requestJson(`${base}/jobs/poll`, {
          token,
          body: { max_jobs: MAX_JOBS_PER_POLL, wait_ms: POLL_WAIT_MS },
        })) as { jobs: { job_id: string; lease_id: string }[] };
        for (const j of jobs) {
          if (leased.has(j.job_id)) leasedAgain++;
          leased.add(j.job_id);
        }
        await Promise.all(
          jobs.map(async (j) => {
            await requestJson(`${base}/result`, {
              token,
              body: { job_id: j.job_id, lease_id: j.lease_id, status: 'succeeded', result: { ok: true } },
            });
            done++;
            lastResultAt = performance.now();
          }),
        );
      }
    }),
  );
  return { ms: lastResultAt - started, leasedAgain };
}

/** The dispatch load against `urls`: warm-up, then submit JOBS and drain them; jobs and workers tagged `label`. */
async function dispatch(urls: string[], databaseUrl: string, label: string): Promise<Record<string, unknown>> {
  const workers = await registerWorkers(urls, label);
  await submit(urls, WARMUP_JOBS, `${label}-warm`);
  await drain(workers, WARMUP_JOBS);
  const submitMs = await submit(urls, JOBS, label);
  const run = await drain(workers, JOBS);
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const like = [`task-${label}-%`];
    const states = await db.query(`SELECT state, count(*)::int AS n FROM jobs WHERE task_id LIKE $1 GROUP BY state`, like);
    const twice = await db.query(
      `SELECT count(*)::int AS n FROM (SELECT a.job_id FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE j.task_id LIKE $1 GROUP BY a.job_id HAVING count(*) > 1) x`,
      like,
    );
    return {
      replicas: urls.length,
      label,
      workers: WORKERS,
      jobs: JOBS,
      jobsPerSecond: Math.round((JOBS / run.ms) * 1000),
      seconds: Math.round(run.ms) / 1000,
      submissionsPerSecond: Math.round((JOBS / submitMs) * 1000),
      // The machine is shared: how busy it was right after this run.
      loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
      checks: {
        // Warm-up and measured jobs of this run.
        jobsByState: Object.fromEntries(states.rows.map((r: { state: string; n: number }) => [r.state, r.n])),
        jobsLeasedMoreThanOnce: twice.rows[0].n as number,
        leasesSeenTwiceByWorkers: run.leasedAgain,
      },
    };
  } finally {
    await db.end();
  }
}

/** The mean jobs/s of a configuration's runs, with the runs themselves. */
function summary(runs: Record<string, unknown>[]) {
  const rates = runs.map((r) => r.jobsPerSecond as number);
  return {
    jobsPerSecond: Math.round(rates.reduce((n, r) => n + r, 0) / rates.length),
    min: Math.min(...rates),
    max: Math.max(...rates),
    runs,
  };
}

const leasedTwiceIn = (r: Record<string, unknown>) => {
  const c = r.checks as { jobsLeasedMoreThanOnce: number; leasesSeenTwiceByWorkers: number };
  return c.jobsLeasedMoreThanOnce + c.leasesSeenTwiceByWorkers;
};

const db = await createTestDatabase();
let group: Replicas | undefined;
try {
  const bundle = await ensureBundle();
  group = await startReplicas(1, { DATABASE_URL: db.url, CYNODE_BUNDLE: bundle, CYNODE_LOG_LEVEL: 'info' });
  const first = group.replicas[0]!;
  await admin(`${first.url}/v1/preferences/system/default/cloud_allowed`, { value: true }, 'PUT');
  // 1, 3, 1, 3 …: the configurations take turns, so a busy moment of the machine falls on both.
  const one: Record<string, unknown>[] = [];
  const three: Record<string, unknown>[] = [];
  let propagation: Record<string, unknown> | undefined;
  for (let round = 1; round <= ROUNDS; round++) {
    one.push(await dispatch([first.url], db.url, `r1-${round}`));
    const added = await Promise.all([group.add(), group.add()]);
    const urls = [first.url, ...added.map((r) => r.url)];
    await new Promise((r) => setTimeout(r, 500)); // the new replicas' LISTEN connections settle
    propagation ??= await killSwitch(urls);
    three.push(await dispatch(urls, db.url, `r3-${round}`));
    for (const r of added) r.process.child.kill('SIGTERM');
    await Promise.all(added.map((r) => r.process.exited));
  }
  const oneReplica = summary(one);
  const threeReplicas = summary(three);
  const leasedTwice = [...one, ...three].reduce((n, r) => n + leasedTwiceIn(r), 0);
  console.log(
    JSON.stringify(
      {
        bench: 'replicas',
        node: process.version,
        cpus: cpus().length,
        note: `all replicas, PostgreSQL and the load generator share these ${cpus().length} cores: 3 replicas add coordination, not CPU`,
        killSwitch: propagation,
        dispatch: {
          rounds: ROUNDS,
          note: `each 3-replica run starts 2 fresh replicas beside the first; every run warms up with ${WARMUP_JOBS} jobs before the clock starts`,
          oneReplica,
          threeReplicas,
          ratioThreeToOne: Math.round((threeReplicas.jobsPerSecond / oneReplica.jobsPerSecond) * 100) / 100,
          jobsLeasedTwice: leasedTwice,
          met: leasedTwice === 0,
        },
      },
      null,
      2,
    ),
  );
} catch (err) {
  // What the gateways said last explains most failures (a crash, a refused start).
  for (const [i, r] of (group?.replicas ?? []).entries())
    console.error(
      `--- replica ${i} (exit ${r.process.child.exitCode ?? r.process.child.signalCode ?? 'running'}), last output:\n${r.process.output().slice(-1500)}`,
    );
  throw err;
} finally {
  await group?.stop();
  agent.destroy();
  await db.drop();
}
