/**
 * `npm run bench:mcp`: what the MCP gateway adds to a tool call, printed as one JSON object.
 * One upstream, the reference artifact server (`cynode-gateway artifact-server`, its own
 * process, final gate on), answers `artifact_get` two ways, at fixed rates (open loop):
 *  - direct: a JSON-RPC `tools/call` straight to the upstream, with a forward token the bench
 *    signs before the clock starts (the upstream takes nothing without one);
 *  - gateway: the same call as a worker to `/mcp` on the gateway (`artifacts.artifact_get`):
 *    worker JWT, the caller's live lease looked up (reused for at most 1 s, dropped when a lease
 *    end is announced), argument schema check, `mcp.tool.invoke`
 *    decided and logged, a forward token signed, the upstream's final gate, the tool audit.
 * Added latency = the gateway path's percentile minus the direct one's at the same rate.
 * Measured in one run, in this order: gateway CPU per call (from /proc, over a closed loop of
 * BENCH_CALLS calls at BENCH_CONCURRENCY), the open-loop points (BENCH_RATES), and the knee
 * (`findKnee`). The gateway runs under V8's profiler; `cpuByStage` is what a call cost where.
 * Targets: CPU ≤ 0.5 ms per call, added p50 ≤ 1 ms and p99 ≤ 5 ms at 100 and 300/s, knee ≥ 1,000/s.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import pino from 'pino';
import { FORWARD_TOKEN_HEADER, signForwardToken } from '../src/final-gate/index.js';
import { createKeyStore } from '../src/keys/index.js';
import { ENTRYPOINTS } from '../src/policy/index.js';
import { connectAndMigrate } from '../src/storage/index.js';
import { ensureBundle } from '../test/helpers/bundle.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { cliArgs, startGatewayProcess } from '../test/helpers/gateway.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import {
  agent,
  findKnee,
  freePort,
  load,
  percentiles,
  processCpuMs,
  send,
  startChild,
  type Target,
  type Verdict,
  closedLoop,
} from './lib.js';
import { GATEWAY_STAGES, profileArgs, stageBreakdown, type Stage } from './profile.js';

const RATES = (process.env.BENCH_RATES ?? '100,300').split(',').filter(Boolean).map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const WARMUP_SECONDS = 2;
const CALLS = Number(process.env.BENCH_CALLS ?? 3000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const KNEE_SECONDS = Number(process.env.BENCH_KNEE_SECONDS ?? Math.min(SECONDS, 5));
const PROFILE_DIR = join('build', 'bench-profiles', 'mcp');
const TASK = 'bench-task';
const TARGET = { cpuMsPerCall: 0.5, addedP50Ms: 1, addedP99Ms: 5, kneePerSecond: 1000 };
// The MCP SDK (and the zod schemas it parses with) is a stage of its own here.
const MCP_STAGES: Stage[] = [{ name: 'MCP SDK', match: /^npm:(@modelcontextprotocol\/sdk|zod|zod-to-json-schema)$/ }, ...GATEWAY_STAGES];

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** CPU the process `pid` spent per call over a closed loop, after a warm-up. */
async function cpuPerCall(target: Target, pid: number) {
  await closedLoop(target, { calls: Math.min(500, CALLS), concurrency: CONCURRENCY });
  const before = processCpuMs(pid);
  const { seconds, ...run } = await closedLoop(target, { calls: CALLS, concurrency: CONCURRENCY });
  const used = processCpuMs(pid) - before;
  return { calls: CALLS, ...run, callsPerSecond: Math.round(CALLS / seconds), cpuMsPerCall: round3(used / CALLS) };
}

/** The open-loop points: each rate offered to the direct path, then to the gateway, after a warm-up each. */
async function latencyPoints(direct: Target, gateway: Target) {
  const rates: Record<
    string,
    { ms: Record<string, ReturnType<typeof percentiles> & { errors: number }>; addedMs: { p50: number; p99: number } }
  > = {};
  for (const rate of RATES) {
    const ms: Record<string, ReturnType<typeof percentiles> & { errors: number; firstError?: string }> = {};
    for (const [name, target] of Object.entries({ direct, gateway })) {
      await load(target, false, rate, WARMUP_SECONDS);
      const { latencies, errors, firstError } = await load(target, false, rate, SECONDS);
      ms[name] = { ...percentiles(latencies), errors, ...(firstError && { firstError }) };
    }
    rates[`${rate}/s`] = { ms, addedMs: { p50: round3(ms.gateway!.p50 - ms.direct!.p50), p99: round3(ms.gateway!.p99 - ms.direct!.p99) } };
  }
  return rates;
}

/** The MCP rows: CPU per call, p50 and p99 at each rate (gateway beside direct), the knee. */
function verdictsOf(cpu: { cpuMsPerCall: number }, rates: Awaited<ReturnType<typeof latencyPoints>>, knee: number): Verdict[] {
  const path = 'MCP tools/call through /mcp';
  const out: Verdict[] = [
    {
      path,
      measure: 'gateway CPU per call, ms',
      cynode: cpu.cpuMsPerCall,
      peer: null,
      ratio: null,
      target: `≤ ${TARGET.cpuMsPerCall} ms`,
      met: cpu.cpuMsPerCall <= TARGET.cpuMsPerCall,
    },
  ];
  for (const [rate, point] of Object.entries(rates)) {
    for (const q of ['p50', 'p99'] as const) {
      const limit = q === 'p50' ? TARGET.addedP50Ms : TARGET.addedP99Ms;
      const errors = point.ms.gateway!.errors + point.ms.direct!.errors;
      out.push({
        path,
        measure: `${q} latency at ${rate}, ms (peer: a direct call to the upstream)`,
        cynode: point.ms.gateway![q],
        peer: point.ms.direct![q],
        ratio: point.ms.direct![q] > 0 ? round3(point.ms.gateway![q] / point.ms.direct![q]) : null,
        target: `added ≤ ${limit} ms, 0 errors`,
        met: point.addedMs[q] <= limit && errors === 0,
      });
    }
  }
  out.push({
    path,
    measure: 'knee, calls/s (added p99 ≤ 10 ms, 0 errors)',
    cynode: knee,
    peer: null,
    ratio: null,
    target: `≥ ${TARGET.kneePerSecond}/s`,
    met: knee >= TARGET.kneePerSecond,
  });
  return out;
}

async function main() {
  const db = await createTestDatabase();
  const upstreamPort = await freePort();
  const gw = await startGatewayProcess(
    {
      DATABASE_URL: db.url,
      CYNODE_BUNDLE: await ensureBundle(),
      CYNODE_LOG_LEVEL: 'info',
      CYNODE_DATABASE_POOL_MAX: '20',
      CYNODE_MCP_UPSTREAMS: `artifacts=http://127.0.0.1:${upstreamPort}/mcp`,
      CYNODE_JOB_LEASE_TTL_MS: '3600000',
    },
    [],
    profileArgs(PROFILE_DIR),
  );
  const control = `http://127.0.0.1:${gw.ports.control}`;
  const upstream = await startChild(
    cliArgs('artifact-server'),
    {
      DATABASE_URL: db.url,
      CYNODE_ARTIFACTS_PORT: String(upstreamPort),
      CYNODE_GATEWAY_URL: control,
      CYNODE_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      CYNODE_POLICY_ALLOW_UNSIGNED: 'true',
      CYNODE_LOG_LEVEL: 'info',
    },
    /artifact server ready/,
  );
  // The bench's own signing key, published like a replica's, so the upstream trusts its tokens.
  const keyDb = await connectAndMigrate(
    { url: db.url, dataDir: '', poolMax: 2, connectTimeoutMs: 5000, startupTimeoutMs: 0 },
    pino({ level: 'silent' }),
  );
  const keys = await createKeyStore({
    knex: keyDb.knex,
    logger: pino({ level: 'silent' }),
    rotationMs: 86_400_000,
    maxTokenTtlMs: 3_600_000,
  });
  const admin = async (path: string, method: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${control}${path}`, {
      method,
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  };
  try {
    const psk = (await admin('/v1/psks', 'POST', { name: 'bench' })).secret as string;
    const registered = await fetch(`${control}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-cynode-psk': psk },
      body: JSON.stringify({
        node_id: 'cloud-bench-01',
        labels: ['cloud'],
        region: 'us-east-1',
        inference_mode: 'provider_api',
        supported_providers: ['openai'],
        max_concurrency: 4,
      }),
    }).then((r) => r.json() as Promise<{ token: string }>);
    await admin('/v1/preferences/system/default/cloud_allowed', 'PUT', { value: true });
    const job = await admin(
      '/v1/jobs',
      'POST',
      { task_id: TASK, user_id: 'bench', requirements: { labels: ['cloud'] }, payload: { kind: 'echo' } },
      { 'idempotency-key': randomUUID() },
    );
    const leased = await fetch(`${control}/jobs/poll`, {
      method: 'POST',
      headers: { authorization: `Bearer ${registered.token}`, 'content-type': 'application/json' },
      body: '{}',
    }).then((r) => r.json() as Promise<{ jobs: { job_id: string }[] }>);
    if (!leased.jobs.some((j) => j.job_id === job.id)) throw new Error('the bench worker did not lease its job');

    const rpc = (name: string) =>
      JSON.stringify({
        jsonrpc: '2.0',
        id: randomUUID(),
        method: 'tools/call',
        params: { name, arguments: { task_id: TASK, name: 'notes.md' } },
      });
    const ok = (text: string) => !text.includes('"error"') && !text.includes('"isError":true');
    let gatewayCalls = 0; // every request the profile saw, to charge its stages per call
    const gateway: Target = {
      url: `http://127.0.0.1:${gw.ports.mcp}/mcp`,
      headers: { authorization: `Bearer ${registered.token}`, accept: 'application/json, text/event-stream' },
      body: () => {
        gatewayCalls++;
        return rpc('artifacts.artifact_get');
      },
      ok,
    };
    const input = {
      action: 'mcp.tool.invoke',
      subject: { kind: 'worker', node_id: 'cloud-bench-01', labels: ['cloud'], agent_type: 'worker' },
      resource: { tool: 'artifacts.artifact_get', server: 'artifacts', name: 'artifact_get' },
      context: { task_id: TASK, job_id: job.id as string, lease_active: true, arguments: { task_id: TASK } },
    };
    const direct: Target = {
      url: `http://127.0.0.1:${upstreamPort}/mcp`,
      headers: { accept: 'application/json, text/event-stream' },
      body: () => rpc('artifact_get'),
      sign: async (body) => ({
        [FORWARD_TOKEN_HEADER]: await signForwardToken(
          keys.current(),
          {
            issuer: 'cynode-gateway',
            audience: 'mcp-upstream:artifacts',
            subject: 'bench',
            entrypoint: ENTRYPOINTS.mcpToolInvoke,
            input,
            revision: 'bench',
          },
          body,
          30_000,
        ),
      }),
      ok,
    };
    // The artifact the calls read, written through the gateway; then both paths must answer.
    await send(
      {
        ...gateway,
        body: () =>
          JSON.stringify({
            jsonrpc: '2.0',
            id: 1,
            method: 'tools/call',
            params: { name: 'artifacts.artifact_put', arguments: { task_id: TASK, name: 'notes.md', content: 'benchmark notes' } },
          }),
      },
      false,
    );
    await send(direct, false);
    await send(gateway, false);

    const cpu = await cpuPerCall(gateway, gw.child.pid!);
    // What the upstream spends on one direct call, measured the same way: how fast this machine is right now.
    const upstreamCpu = await cpuPerCall(direct, upstream.child.pid!);
    const rates = await latencyPoints(direct, gateway);
    // BENCH_KNEE_SECONDS=0 (and BENCH_RATES=) leave the CPU figure alone, for a quick look at one change.
    const knee = KNEE_SECONDS > 0 ? await findKnee(gateway, direct, { seconds: KNEE_SECONDS }) : { knee: 0, steps: [] };
    gw.child.kill('SIGTERM');
    await gw.exited;
    const verdicts = verdictsOf(cpu, rates, knee.knee);
    console.log(
      JSON.stringify(
        {
          bench: 'mcp',
          tool: 'artifacts.artifact_get',
          secondsPerPoint: SECONDS,
          cpu: { concurrency: CONCURRENCY, ...cpu, upstreamCpuMsPerDirectCall: upstreamCpu.cpuMsPerCall },
          rates,
          knee: { secondsPerStep: KNEE_SECONDS, ...knee },
          verdicts,
          met: verdicts.every((v) => v.met),
          cpuByStage: {
            note: 'sampled over the whole run (closed loop, points and knee search), per gateway call',
            ...stageBreakdown(PROFILE_DIR, gatewayCalls, MCP_STAGES),
          },
        },
        null,
        2,
      ),
    );
  } finally {
    keys.close();
    await keyDb.close();
    upstream.child.kill('SIGTERM');
    gw.child.kill('SIGTERM');
    await gw.exited;
    await db.drop();
    agent.destroy();
  }
}

await main();
