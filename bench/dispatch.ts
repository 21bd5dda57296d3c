/**
 * `npm run bench:dispatch`: the Worker API under load, printed as one JSON object.
 *  - gateway: a real gateway process on PostgreSQL; 50 workers (HTTP clients on 127.0.0.1)
 *    long-poll `POST /jobs/poll`, and post `POST /result` for every job, while an
 *    orchestrator submits jobs with Idempotency-Keys. Every claim asks the dispatch policy
 *    (Wasm) about each candidate and records the decision. Reports jobs/s end to end with
 *    submissions running alongside (first submission to last accepted result), drain jobs/s
 *    (queue filled first: poll, lease, result), claim/result latency p50/p99, and checks
 *    (no job leased twice, every job succeeded). Target: ≥ 1,000 jobs/s.
 *  - peer: the same schema driven directly with SQL by 50 connections (claim with
 *    FOR UPDATE SKIP LOCKED, complete), no HTTP, no policy: the database's own ceiling
 *    on this machine, so the ratio shows what the gateway costs on top.
 */
import http from 'node:http';
import pg from 'pg';
import { ensureBundle } from '../test/helpers/bundle.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { startGatewayProcess } from '../test/helpers/gateway.js';
import { createTestDatabase } from '../test/helpers/postgres.js';

const WORKERS = 50;
const JOBS = Number(process.env.BENCH_JOBS ?? 6000);
const MAX_JOBS_PER_POLL = 8;
// Long polls as the reference worker makes them (it waits 25 s); shorter so a phase ends soon after its last job.
const POLL_WAIT_MS = 5000;
// Concurrent submissions from the orchestrator.
const SUBMITTERS = 32;

function percentiles(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))]! * 100) / 100;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: at(1) };
}

// node:http with a keep-alive agent: the load generator must cost the machine less than
// the gateway it measures (fetch/undici costs several times more CPU per request).
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

function json(
  url: string,
  init: { method?: string; token: string; body?: unknown; headers?: Record<string, string> },
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
): Promise<Record<string, any>> {
  const payload = init.body === undefined ? undefined : JSON.stringify(init.body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        agent,
        method: init.method ?? 'POST',
        headers: {
          authorization: `Bearer ${init.token}`,
          'content-type': 'application/json',
          ...(payload && { 'content-length': Buffer.byteLength(payload) }),
          ...init.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          if ((res.statusCode ?? 500) >= 400) reject(new Error(`${res.statusCode} ${JSON.stringify(body)}`));
          else resolve(body);
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function gatewayRun(): Promise<Record<string, unknown>> {
  const db = await createTestDatabase();
  const gw = await startGatewayProcess({
    DATABASE_URL: db.url,
    CYNODE_BUNDLE: await ensureBundle(),
    CYNODE_LOG_LEVEL: 'info',
    CYNODE_DATABASE_POOL_MAX: '20',
    ...(process.env.BENCH_GATEWAY_NODE_OPTIONS && { NODE_OPTIONS: process.env.BENCH_GATEWAY_NODE_OPTIONS }),
  });
  const base = `http://127.0.0.1:${gw.ports.control}`;
  try {
    const admin = (path: string, body?: unknown, method = 'POST', headers: Record<string, string> = {}) =>
      json(base + path, { token: TEST_ADMIN_TOKEN, body, method, headers });
    const psk = (await admin('/v1/psks', { name: 'bench' })).secret as string;
    await admin('/v1/preferences/system/default/cloud_allowed', { value: true }, 'PUT');
    // Half cloud workers (Example 1), half local nodes: both kinds pass through the policy.
    const tokens: string[] = [];
    for (let i = 0; i < WORKERS; i++) {
      const cloud = i % 2 === 0;
      const report = cloud
        ? {
            node_id: `cloud-${i}`,
            labels: ['cloud', 'provider_openai'],
            region: 'us-east-1',
            inference_mode: 'provider_api',
            supported_providers: ['openai'],
            max_concurrency: 16,
          }
        : {
            node_id: `local-${i}`,
            labels: ['local'],
            region: 'onprem',
            inference_mode: 'ollama_local',
            supported_providers: [],
            max_concurrency: 16,
          };
      tokens.push(
        ((await json(`${base}/register`, { token: 'none', body: report, headers: { 'x-cynode-psk': psk } })) as { token: string }).token,
      );
    }

    const submitLatency: number[] = [];
    const submit = async (n: number, concurrency: number, tag: string) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < n) {
            const i = next++;
            const t0 = performance.now();
            await admin(
              '/v1/jobs',
              { task_id: `task-${tag}-${i}`, user_id: 'bench', payload: { kind: 'echo', input: i }, estimated_cost_usd: 0.01 },
              'POST',
              { 'idempotency-key': `${tag}-${i}` },
            );
            submitLatency.push(performance.now() - t0);
          }
        }),
      );
    };

    const drive = async (expected: number) => {
      const claimLatency: number[] = [];
      const resultLatency: number[] = [];
      let done = 0;
      let emptyPolls = 0;
      let lastResultAt = 0;
      await Promise.all(
        tokens.map(async (token) => {
          while (done < expected) {
            const t0 = performance.now();
            const { jobs } = (await json(`${base}/jobs/poll`, { token, body: { max_jobs: MAX_JOBS_PER_POLL, wait_ms: POLL_WAIT_MS } })) as {
              jobs: { job_id: string; lease_id: string }[];
            };
            if (jobs.length === 0) {
              emptyPolls++;
              continue;
            }
            claimLatency.push(performance.now() - t0);
            await Promise.all(
              jobs.map(async (j) => {
                const r0 = performance.now();
                await json(`${base}/result`, {
                  token,
                  body: { job_id: j.job_id, lease_id: j.lease_id, status: 'succeeded', result: { ok: true } },
                });
                resultLatency.push(performance.now() - r0);
                done++;
                lastResultAt = performance.now();
              }),
            );
          }
        }),
      );
      return { claimLatency, resultLatency, emptyPolls, lastResultAt, done };
    };

    // Warm-up: JIT, pools, Wasm.
    await submit(300, 20, 'warm');
    await drive(300);

    // End to end: submissions and work at the same time.
    submitLatency.length = 0;
    const e2eStart = performance.now();
    const [, e2e] = await Promise.all([submit(JOBS, SUBMITTERS, 'e2e'), drive(JOBS)]);
    const e2eMs = e2e.lastResultAt - e2eStart;
    const e2eSubmitMs = percentiles(submitLatency);

    // Drain: the queue is full before the workers start.
    const fillStart = performance.now();
    await submit(JOBS, SUBMITTERS, 'drain');
    const submitMs = performance.now() - fillStart;
    const drainStart = performance.now();
    const drain = await drive(JOBS);
    const drainMs = drain.lastResultAt - drainStart;

    const pgc = new pg.Client({ connectionString: db.url });
    await pgc.connect();
    const { rows } = await pgc.query(`SELECT state, count(*)::int AS n FROM jobs GROUP BY state`);
    const decisions = await pgc.query(`SELECT count(*)::int AS n FROM decision_log WHERE path = 'cynode/dispatch/decision'`);
    const twice = await pgc.query(`SELECT count(*)::int AS n FROM (SELECT job_id FROM job_attempts GROUP BY job_id HAVING count(*) > 1) x`);
    await pgc.end();
    return {
      workers: WORKERS,
      jobs: JOBS,
      endToEnd: {
        jobsPerSecond: Math.round((JOBS / e2eMs) * 1000),
        seconds: Math.round(e2eMs) / 1000,
        // Round trip of polls that came back with jobs; includes the time a long poll waited for work.
        pollWithJobsMs: percentiles(e2e.claimLatency),
        resultMs: percentiles(e2e.resultLatency),
        submitMs: e2eSubmitMs,
      },
      // Work waiting in the queue: a poll's round trip is the claim (lock, decide, lease).
      drain: {
        jobsPerSecond: Math.round((JOBS / drainMs) * 1000),
        claimMs: percentiles(drain.claimLatency),
        resultMs: percentiles(drain.resultLatency),
      },
      submissionsPerSecond: Math.round((JOBS / submitMs) * 1000),
      checks: {
        jobsByState: Object.fromEntries(rows.map((r) => [r.state, r.n])),
        dispatchDecisionsRecorded: decisions.rows[0].n,
        jobsLeasedMoreThanOnce: twice.rows[0].n,
      },
    };
  } finally {
    gw.child.kill('SIGTERM');
    await gw.exited;
    await db.drop();
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
    const started = performance.now();
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        while (done < JOBS) {
          const t0 = performance.now();
          const { rows } = await pool.query(
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
              pool.query(`UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = $1 AND lease_id = $2`, [r.id, r.lease_id]),
            ),
          );
          done += rows.length;
        }
      }),
    );
    const ms = performance.now() - started;
    return { jobsPerSecond: Math.round((JOBS / ms) * 1000), claimMs: percentiles(claimLatency) };
  } finally {
    await pool.end();
    await db.drop();
  }
}

const gateway = await gatewayRun();
const peer = await sqlPeer();
agent.destroy();
const drain = (gateway.drain as { jobsPerSecond: number }).jobsPerSecond;
const e2e = (gateway.endToEnd as { jobsPerSecond: number }).jobsPerSecond;
console.log(
  JSON.stringify(
    {
      bench: 'dispatch',
      gateway,
      peer: { name: 'plain SQL queue (same schema, no HTTP, no policy)', ...peer },
      ratios: {
        drainVsPeer: Math.round((drain / (peer.jobsPerSecond as number)) * 100) / 100,
        endToEndVsPeer: Math.round((e2e / (peer.jobsPerSecond as number)) * 100) / 100,
      },
      target: {
        jobsPerSecond: 1000,
        drainMet: drain >= 1000,
        endToEndWithConcurrentSubmissionMet: e2e >= 1000,
      },
    },
    null,
    2,
  ),
);
