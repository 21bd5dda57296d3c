/**
 * `npm run bench:fleet`: a fleet of workers long-polling one replica, printed as one JSON object.
 *  - gateway: one gateway process on PostgreSQL. BENCH_FLEET_WORKERS (1,000) workers register
 *    with a PSK and get real worker JWTs; each keeps a long poll (`POST /jobs/poll`, 30 s
 *    wait) open on its own connection and polls again as soon as one ends. Reports the
 *    gateway's RSS and open file descriptors before registration, after it, and with every
 *    poll waiting: RSS per idle worker against the 50 KB target. Then jobs are submitted at a
 *    steady BENCH_FLEET_RATE per second for BENCH_SECONDS: p50/p99 from sending a
 *    submission to a worker holding its lease (target p99 ≤ 50 ms), each worker posting its
 *    result and polling again. Also the gateway's CPU per job, and per second with the whole
 *    fleet idle (what holding the polls costs).
 *  - peer: a bare node:http server holding the same number of requests open (no framework,
 *    no auth, no queue): the floor of what an idle long poll costs a Node process.
 * The gateway runs under the V8 profiler (BENCH_PROFILE=0 turns it off); `cpuByStage` says
 * where its CPU went.
 */
import http from 'node:http';
import { join } from 'node:path';
import { ensureBundle } from '../test/helpers/bundle.js';
import { startGatewayProcess } from '../test/helpers/gateway.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { claimCounts, cpuMeter, metricValue, prepareRegistrations, registerWorkers, submitJob } from './jobs-common.js';
import { agent, percentiles, processCpuMs, processFootprint, requestJson, startChild } from './lib.js';
import { profileArgs, stageBreakdown } from './profile.js';

const WORKERS = Number(process.env.BENCH_FLEET_WORKERS ?? 1000);
const RATE = Number(process.env.BENCH_FLEET_RATE ?? 100);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const POLL_WAIT_MS = 30_000;
const MAX_CONCURRENCY = 4;
const PROFILE_DIR = join('build', 'bench-profiles', 'fleet');
const TARGET_KB_PER_WORKER = 50;
const TARGET_P99_MS = 50;
// How long RSS is watched at each reading; the lowest counts, so garbage a collection would
// free (one lands in the window while the process allocates) is not charged to the workers.
const SETTLE_MS = 5000;

// One connection per waiting poll, plus room for results: the shared agent stops at 512.
const fleetAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const kb = (x: number) => Math.round(x * 10) / 10;

/** A job as a poll hands it out (what the bench reads of it). */
interface Leased {
  job_id: string;
  lease_id: string;
  payload: { input: number };
}

/** A long poll over its own connection: the leased jobs, or none when the wait ended empty or the fleet stopped. */
function longPoll(url: string, token: string, stopped: () => boolean): Promise<Leased[]> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ max_jobs: MAX_CONCURRENCY, wait_ms: POLL_WAIT_MS });
    const req = http.request(
      url,
      {
        agent: fleetAgent,
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 200) resolve((JSON.parse(text) as { jobs: Leased[] }).jobs);
          else reject(new Error(`poll answered ${res.statusCode}: ${text.slice(0, 200)}`));
        });
      },
    );
    req.on('error', (err) => (stopped() ? resolve([]) : reject(err)));
    req.end(body);
  });
}

/** RSS (KiB, lowest of the readings over SETTLE_MS) and open fds of `pid`. */
async function settledFootprint(pid: number): Promise<{ rssKb: number; fds: number }> {
  const readings: number[] = [];
  let fds = 0;
  for (let t = 0; t < SETTLE_MS; t += 500) {
    const f = processFootprint(pid);
    readings.push(f.rssKb);
    fds = f.fds;
    await sleep(500);
  }
  return { rssKb: Math.min(...readings), fds };
}

/** The fleet on the gateway: footprint with every poll waiting, then submit-to-lease latency at a steady rate. */
async function gatewayRun(): Promise<Record<string, unknown>> {
  const db = await createTestDatabase();
  const gw = await startGatewayProcess(
    { DATABASE_URL: db.url, CYNODE_BUNDLE: await ensureBundle(), CYNODE_LOG_LEVEL: 'info', CYNODE_DATABASE_POOL_MAX: '20' },
    [],
    process.env.BENCH_PROFILE === '0' ? [] : profileArgs(PROFILE_DIR),
  );
  const pid = gw.child.pid!;
  const base = `http://127.0.0.1:${gw.ports.control}`;
  let stopped = false;
  try {
    // Warm-up: one worker through a few jobs (JIT, pools, Wasm), so the readings hold the fleet, not the start.
    const psk = await prepareRegistrations(base);
    const [warm] = await registerWorkers(base, psk, 1, { prefix: 'warm-', maxConcurrency: MAX_CONCURRENCY });
    for (let i = 0; i < 20; i++) {
      await submitJob(base, 'warm', i);
      const jobs = await longPoll(`${base}/jobs/poll`, warm!, () => stopped);
      for (const j of jobs) await requestJson(`${base}/result`, { token: warm!, body: { ...ref(j), status: 'succeeded', result: null } });
    }
    const idle = await settledFootprint(pid);
    const aloneCpu0 = processCpuMs(pid);
    await sleep(5000);
    const aloneCpuMsPerSecond = Math.round((processCpuMs(pid) - aloneCpu0) / 5);

    const registerStart = performance.now();
    const tokens = await registerWorkers(base, psk, WORKERS, { maxConcurrency: MAX_CONCURRENCY, parallel: 8 });
    const registerSeconds = (performance.now() - registerStart) / 1000;
    const registered = await settledFootprint(pid);
    agent.destroy();

    // Every worker keeps a poll open; a leased job is timed, its result posted, and the worker polls again.
    const sentAt = new Map<number, number>();
    const leaseMs: number[] = [];
    const results: Promise<unknown>[] = [];
    const errors: string[] = [];
    const fleet = tokens.map(async (token) => {
      while (!stopped) {
        const jobs = await longPoll(`${base}/jobs/poll`, token, () => stopped).catch((err: Error) => {
          errors.push(err.message);
          return sleep(1000).then(() => []);
        });
        const at = performance.now();
        for (const j of jobs) {
          const sent = sentAt.get(j.payload.input);
          if (sent !== undefined) leaseMs.push(at - sent);
          const result = requestJson(`${base}/result`, { token, body: { ...ref(j), status: 'succeeded', result: null } });
          results.push(result.catch((err: Error) => void errors.push(err.message)));
        }
      }
    });
    // Every poll waiting, by the gauge; a gateway without it (an older one, measured for comparison) by its connections.
    const allWaiting = async () => {
      const gauged = await metricValue(base, 'cynode_job_polls_waiting');
      return Number.isNaN(gauged) ? processFootprint(pid).fds >= registered.fds + WORKERS : gauged >= WORKERS;
    };
    for (let t = 0; !(await allWaiting()); t++) {
      if (t > 120) throw new Error(`fewer than ${WORKERS} polls waiting after 60 s`);
      await sleep(500);
    }
    const connected = await settledFootprint(pid);

    const idleCpu0 = processCpuMs(pid);
    const idleClaims0 = await claimCounts(base);
    await sleep(5000);
    const idleCpuMsPerSecond = Math.round((processCpuMs(pid) - idleCpu0) / 5);
    const idleClaims = perUnit(idleClaims0, await claimCounts(base), 5);

    // Steady submissions, open loop: each one's clock starts as it is sent.
    const jobs = Math.round(RATE * SECONDS);
    // Connections idle past the server's keep-alive timeout may be closed as they are reused: start afresh.
    agent.destroy();
    const claims0 = await claimCounts(base);
    const cpu = cpuMeter(pid, db.name);
    const submitMs: number[] = [];
    const start = performance.now();
    const submits: Promise<void>[] = [];
    for (let i = 0; i < jobs; i++) {
      const due = start + (i * 1000) / RATE;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      sentAt.set(i, performance.now());
      submits.push(submitJob(base, 'fleet', i).then(() => void submitMs.push(performance.now() - sentAt.get(i)!)));
    }
    await Promise.all(submits);
    for (let t = 0; leaseMs.length < jobs; t++) {
      if (t > 600) throw new Error(`only ${leaseMs.length} of ${jobs} jobs leased 60 s after the last submission`);
      await sleep(100);
    }
    await Promise.all(results);
    const cpuPerJob = cpu(jobs);
    const claimsPerJob = perUnit(claims0, await claimCounts(base), jobs);
    const after = processFootprint(pid);

    stopped = true;
    fleetAgent.destroy();
    await Promise.allSettled(fleet);
    const perWorker = (a: { rssKb: number }, b: { rssKb: number }) => kb((b.rssKb - a.rssKb) / WORKERS);
    return {
      workers: WORKERS,
      registration: { seconds: Math.round(registerSeconds * 10) / 10, perSecond: Math.round(WORKERS / registerSeconds) },
      footprint: {
        idle,
        registered,
        connected,
        afterJobs: after,
        pollsWaiting: WORKERS,
        // From before the fleet registered: its sessions, cached tokens and rows, sockets and waiting polls.
        rssKbPerIdleWorker: perWorker(idle, connected),
        rssKbPerWaitingPoll: perWorker(registered, connected),
        rssKbPerRegistration: perWorker(idle, registered),
      },
      // CPU with no worker at all, then with the fleet idle: the difference is what holding the polls costs.
      idleCpuMsPerSecond: { noWorkers: aloneCpuMsPerSecond, fleetWaiting: idleCpuMsPerSecond },
      idleFleetClaimsPerSecond: idleClaims,
      steady: {
        ratePerSecond: RATE,
        seconds: SECONDS,
        jobs,
        submitToLeaseMs: percentiles(leaseMs),
        submitMs: percentiles(submitMs),
        cpu: cpuPerJob,
        claimsPerJob,
      },
      errors: { count: errors.length, ...(errors[0] !== undefined && { first: errors[0] }) },
    };
  } catch (err) {
    console.error(`gateway output, last lines:\n${gw.output().split('\n').slice(-20).join('\n')}`);
    throw err;
  } finally {
    stopped = true;
    fleetAgent.destroy();
    gw.child.kill('SIGTERM');
    await gw.exited;
    await db.drop();
  }
}

/** Per unit (second, job): the growth of each count between two readings. */
function perUnit(before: Record<string, number>, after: Record<string, number>, units: number): Record<string, number> {
  return Object.fromEntries(Object.keys(after).map((k) => [k, Math.round(((after[k]! - before[k]!) / units) * 100) / 100]));
}

function ref(j: { job_id: string; lease_id: string }) {
  return { job_id: j.job_id, lease_id: j.lease_id };
}

// The peer: node:http holding every request until it is told to answer (never, here).
const PEER_SERVER = `
  const http = require('node:http');
  const held = [];
  http.createServer((req, res) => { req.resume(); held.push(res); }).listen(0, '127.0.0.1', function () {
    console.log('listening ' + this.address().port);
  });`;

/** The same number of idle requests held open by a bare node:http server: RSS per connection. */
async function peerRun(): Promise<Record<string, unknown>> {
  const peer = await startChild(['-e', PEER_SERVER], {}, /listening \d+/);
  const port = Number(/listening (\d+)/.exec(peer.output())![1]);
  const peerAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  try {
    const pid = peer.child.pid!;
    const idle = await settledFootprint(pid);
    const body = JSON.stringify({ max_jobs: MAX_CONCURRENCY, wait_ms: POLL_WAIT_MS });
    for (let i = 0; i < WORKERS; i++) {
      http
        .request(`http://127.0.0.1:${port}/jobs/poll`, {
          agent: peerAgent,
          method: 'POST',
          headers: { authorization: 'Bearer x', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        })
        .on('error', () => undefined)
        .end(body);
    }
    while (processFootprint(pid).fds < idle.fds + WORKERS) await sleep(200);
    const connected = await settledFootprint(pid);
    return { idle, connected, rssKbPerIdleWorker: kb((connected.rssKb - idle.rssKb) / WORKERS) };
  } finally {
    peerAgent.destroy();
    peer.child.kill('SIGTERM');
  }
}

const gateway = await gatewayRun();
const peer = await peerRun();
agent.destroy();
const footprint = gateway.footprint as { rssKbPerIdleWorker: number };
const steady = gateway.steady as { submitToLeaseMs: { p99: number } };
const peerKb = peer.rssKbPerIdleWorker as number;
const verdicts = [
  {
    path: 'fleet',
    measure: `gateway RSS per idle long-polling worker (KB), ${WORKERS} workers on one replica`,
    cynode: footprint.rssKbPerIdleWorker,
    peer: peerKb,
    ratio: peerKb > 0 ? Math.round((footprint.rssKbPerIdleWorker / peerKb) * 100) / 100 : null,
    target: `<= ${TARGET_KB_PER_WORKER} KB`,
    met: footprint.rssKbPerIdleWorker <= TARGET_KB_PER_WORKER,
  },
  {
    path: 'fleet',
    measure: `p99 from submit to lease (ms) at ${RATE} jobs/s, ${WORKERS} workers long-polling one replica`,
    cynode: steady.submitToLeaseMs.p99,
    peer: null,
    ratio: null,
    target: `<= ${TARGET_P99_MS} ms`,
    met: steady.submitToLeaseMs.p99 <= TARGET_P99_MS,
  },
];
const jobsProfiled = 20 + (gateway.steady as { jobs: number }).jobs;
console.log(
  JSON.stringify(
    {
      bench: 'fleet',
      gateway,
      peer: { name: 'bare node:http server holding the same requests open', ...peer },
      verdicts,
      ...(process.env.BENCH_PROFILE !== '0' && {
        cpuByStage: {
          note: 'sampled over the whole run (registration, idle fleet, steady jobs), per job',
          ...stageBreakdown(PROFILE_DIR, jobsProfiled),
        },
      }),
    },
    null,
    2,
  ),
);
