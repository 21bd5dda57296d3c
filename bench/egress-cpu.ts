/**
 * `npm run bench:egress-cpu`: CPU one allowed api.call costs the gateway, beside what one call
 * costs Portkey, printed as one JSON object. Closed loop (BENCH_CONCURRENCY requests in flight,
 * BENCH_CALLS calls per path, after a warm-up) against one loopback fake OpenAI; CPU is read
 * from /proc/<pid>/stat (user + system) of each gateway process over the measured calls, so
 * it counts everything the process did for them: HTTP, auth, both gates, policy, database
 * client, logging. PostgreSQL's own CPU is not included (it is another process).
 *
 * Paths, each non-streamed and streamed: direct routing (the orchestrator token) and worker
 * routing (registered workers with real JWTs, each calling for the job it leases). Workers
 * take turns so no one worker's rate limit (the policy's per-worker RPM) is what is measured.
 * Beside them, the floor (bench/floor-proxy.ts): what a bare node:http proxy costs for the same
 * call on this machine, before any gateway work.
 */
import { join } from 'node:path';
import { ensureBundle } from '../test/helpers/bundle.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { startGatewayProcess } from '../test/helpers/gateway.js';
import { eventually } from '../test/helpers/http.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { createPsk, poll, registerWorker, submitJob } from '../test/helpers/workers.js';
import { profileArgs, stageBreakdown } from './profile.js';
import { agent, freePort, processCpuMs, startChild, type Target, closedLoop } from './lib.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 3000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const WARMUP = Math.min(500, CALLS);
/** Workers taking turns on the worker path: each stays far below its per-minute limit. */
const WORKERS = 32;
const TARGET_MS = 0.5;
const PROFILE_DIR = join('build', 'bench-profiles', 'egress-cpu');
const KEY = 'sk-bench-0123456789abcdefghijklmnopqrstuv';

interface Measured {
  calls: number;
  errors: number;
  firstError?: string;
  callsPerSecond: number;
  cpuMsPerCall: number;
}

async function measure(target: Target, stream: boolean, pid: number): Promise<Measured> {
  await closedLoop(target, { calls: WARMUP, concurrency: CONCURRENCY, stream });
  const before = processCpuMs(pid);
  const { seconds, errors, firstError } = await closedLoop(target, { calls: CALLS, concurrency: CONCURRENCY, stream });
  const used = processCpuMs(pid) - before;
  return {
    calls: CALLS,
    errors,
    ...(firstError && { firstError }),
    callsPerSecond: Math.round(CALLS / seconds),
    cpuMsPerCall: Math.round((used / CALLS) * 1000) / 1000,
  };
}

const chatParams = (stream: boolean) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello' }],
  max_tokens: 16,
  ...(stream && { stream: true }),
});

/** Registers `WORKERS` workers, submits a job for each, and waits until each leases one: the worker path's callers. */
async function leasedWorkers(control: string): Promise<{ token: string; jobId: string }[]> {
  const psk = (await createPsk(control, 'bench')).secret;
  const workers = await Promise.all(
    Array.from({ length: WORKERS }, (_, i) => registerWorker(control, psk, { node_id: `bench-worker-${i}`, rate_limits: { rpm: 600 } })),
  );
  for (let i = 0; i < WORKERS; i++) {
    const job = { task_id: 'bench-task', user_id: 'bench-user', requirements: { labels: ['cloud'] }, payload: { kind: 'api.call' } };
    const res = await submitJob(control, job);
    if (res.status !== 201) throw new Error(`job not submitted: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return Promise.all(
    workers.map(async (worker) => {
      let jobId: string | undefined;
      await eventually(async () => {
        jobId ??= (await poll(control, worker, { max_jobs: 1 })).body.jobs?.[0]?.job_id;
        return jobId !== undefined;
      }, 20_000);
      return { token: worker.token, jobId: jobId! };
    }),
  );
}

/** The worker path: each request from the next worker in turn, for the job it leases (`send` makes the body, then reads the headers). */
function workerTarget(url: string, workers: { token: string; jobId: string }[]): Target {
  let turn = 0;
  let current = workers[0]!;
  return {
    url,
    get headers() {
      return { authorization: `Bearer ${current.token}` };
    },
    body: (stream) => {
      current = workers[turn++ % workers.length]!;
      const call = { provider: 'openai', operation: 'chat.completions', task_id: 'bench-task', job_id: current.jobId };
      return JSON.stringify({ ...call, params: chatParams(stream) });
    },
  };
}

/**
 * The gateway's database URL: over loopback TCP as the tests connect, or with BENCH_PG_SOCKET=<dir>
 * over PostgreSQL's Unix socket in that directory (a co-located database), to show what the
 * loopback TCP stack costs each round trip.
 */
function databaseUrl(url: string): string {
  const dir = process.env.BENCH_PG_SOCKET;
  if (!dir) return url;
  const u = new URL(url);
  return `postgres://${u.username}@/${u.pathname.slice(1)}?host=${encodeURIComponent(dir)}`;
}

async function main() {
  const fake = await startChild(['--import', 'tsx', join('bench', 'fake-provider-server.ts')], {}, /http:\/\/127\.0\.0\.1:\d+/);
  const fakeUrl = /http:\/\/127\.0\.0\.1:\d+/.exec(fake.output())![0];
  const portkeyPort = await freePort();
  const portkey = await startChild(
    [join('node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.js'), `--port=${portkeyPort}`, '--headless'],
    { NODE_ENV: 'production' },
    /Ready for connections/,
  );
  const floor = await startChild(['--import', 'tsx', join('bench', 'floor-proxy.ts'), fakeUrl, KEY], {}, /http:\/\/127\.0\.0\.1:\d+/);
  const floorUrl = /http:\/\/127\.0\.0\.1:\d+/.exec(floor.output())![0];
  const db = await createTestDatabase();
  const gw = await startGatewayProcess(
    {
      DATABASE_URL: databaseUrl(db.url),
      CYNODE_BUNDLE: await ensureBundle(),
      CYNODE_OPENAI_BASE_URL: fakeUrl,
      CYNODE_LOG_LEVEL: 'info',
      CYNODE_DATABASE_POOL_MAX: '20',
      // The benchmark's workers hold their leases for the whole run without heartbeats.
      CYNODE_JOB_LEASE_TTL_MS: '3600000',
    },
    [],
    profileArgs(PROFILE_DIR),
  );
  const control = `http://127.0.0.1:${gw.ports.control}`;
  const admin = (path: string, method: string, body: unknown) =>
    fetch(`${control}${path}`, {
      method,
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).then(async (r) => {
      if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    });
  try {
    await admin('/v1/credentials', 'POST', { provider: 'openai', name: 'bench', secret: KEY });
    await admin('/v1/budgets/task/bench-task', 'PUT', { limit_usd: 1_000_000 });
    await admin('/v1/preferences/system/default/cloud_allowed', 'PUT', { value: true });
    const url = `${control}/v1/api/call`;
    const direct: Target = {
      url,
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
      body: (stream) =>
        JSON.stringify({ provider: 'openai', operation: 'chat.completions', task_id: 'bench-task', params: chatParams(stream) }),
    };
    const worker = workerTarget(url, await leasedWorkers(control));
    const peer: Target = {
      url: `http://127.0.0.1:${portkeyPort}/v1/chat/completions`,
      headers: { authorization: `Bearer ${KEY}`, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${fakeUrl}/v1` },
      body: (stream) => JSON.stringify(chatParams(stream)),
    };
    const floorTarget: Target = {
      url: `${floorUrl}/v1/chat/completions`,
      headers: {},
      body: (stream) => JSON.stringify(chatParams(stream)),
    };
    const pid = gw.child.pid!;
    const paths = {
      'api.call direct, non-streamed': await measure(direct, false, pid),
      'api.call direct, streamed': await measure(direct, true, pid),
      'api.call worker, non-streamed': await measure(worker, false, pid),
      'api.call worker, streamed': await measure(worker, true, pid),
    };
    const portkeyResult = {
      nonStreamed: await measure(peer, false, portkey.child.pid!),
      streamed: await measure(peer, true, portkey.child.pid!),
    };
    const floorResult = {
      nonStreamed: await measure(floorTarget, false, floor.child.pid!),
      streamed: await measure(floorTarget, true, floor.child.pid!),
    };
    gw.child.kill('SIGTERM');
    await gw.exited;
    const verdicts = Object.entries(paths).map(([path, m]) => {
      // A peer that failed its calls (Portkey answers this fake provider's streams with a 500) has no figure to compare with.
      const kind = path.endsWith('non-streamed') ? 'nonStreamed' : 'streamed';
      const figure = (r: Measured) => (r.errors === 0 ? r.cpuMsPerCall : null);
      const p = figure(portkeyResult[kind]);
      const f = figure(floorResult[kind]);
      return {
        path,
        measure: 'gateway CPU per allowed call (ms)',
        cynode: m.cpuMsPerCall,
        peer: p,
        ratio: p === null ? null : Math.round((m.cpuMsPerCall / p) * 100) / 100,
        floor: f,
        ratioToFloor: f === null ? null : Math.round((m.cpuMsPerCall / f) * 100) / 100,
        target: `≤ ${TARGET_MS} ms`,
        met: m.errors === 0 && m.cpuMsPerCall <= TARGET_MS,
      };
    });
    const missed = verdicts.some((v) => !v.met);
    const requests = Object.keys(paths).length * (WARMUP + CALLS);
    console.log(
      JSON.stringify(
        {
          bench: 'egress-cpu',
          concurrency: CONCURRENCY,
          database: process.env.BENCH_PG_SOCKET ? 'unix socket' : 'loopback TCP',
          note: 'chat completions, all three roles in one gateway process (the first gate hands calls to the final gate in process)',
          cynode: paths,
          portkey: portkeyResult,
          floor: {
            note: 'bench/floor-proxy.ts: the least a node:http proxy does for the same call (no policy, no database)',
            ...floorResult,
          },
          verdicts,
          ...(missed && {
            cpuByStage: {
              note: 'sampled over the whole run (every path, warm-up included), per call',
              ...stageBreakdown(PROFILE_DIR, requests),
            },
          }),
        },
        null,
        2,
      ),
    );
  } finally {
    gw.child.kill('SIGTERM');
    await gw.exited;
    fake.child.kill('SIGTERM');
    portkey.child.kill('SIGTERM');
    floor.child.kill('SIGTERM');
    await db.drop();
    agent.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
