/**
 * `npm run bench:egress-cpu`: CPU one api.call costs the gateway, beside what one call costs
 * Portkey, printed as one JSON object. Closed loop (BENCH_CONCURRENCY requests in flight,
 * BENCH_CALLS calls per path, after a warm-up) against one loopback fake OpenAI; CPU is read
 * from /proc/<pid>/stat (user + system) of each gateway process over the measured calls, so
 * it counts everything the process did for them: HTTP, auth, both gates, policy, token,
 * database client, logging. PostgreSQL's own CPU is not included (it is another process).
 */
import { join } from 'node:path';
import { ensureBundle } from '../test/helpers/bundle.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { startGatewayProcess } from '../test/helpers/gateway.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { profileArgs, stageBreakdown } from './profile.js';
import { agent, freePort, processCpuMs, send, startChild, type Target } from './lib.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 3000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const PROFILE_DIR = join('build', 'bench-profiles', 'egress-cpu');
const KEY = 'sk-bench-0123456789abcdefghijklmnopqrstuv';

async function closedLoop(target: Target, calls: number): Promise<{ seconds: number; errors: number }> {
  let next = 0;
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < calls) await send(target, false).catch(() => errors++);
    }),
  );
  return { seconds: (performance.now() - started) / 1000, errors };
}

async function measure(target: Target, pid: number) {
  await closedLoop(target, Math.min(500, CALLS));
  const before = processCpuMs(pid);
  const { seconds, errors } = await closedLoop(target, CALLS);
  const used = processCpuMs(pid) - before;
  return { calls: CALLS, errors, callsPerSecond: Math.round(CALLS / seconds), cpuMsPerCall: Math.round((used / CALLS) * 1000) / 1000 };
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
  const db = await createTestDatabase();
  const gw = await startGatewayProcess(
    {
      DATABASE_URL: db.url,
      CYNODE_BUNDLE: await ensureBundle(),
      CYNODE_OPENAI_BASE_URL: fakeUrl,
      CYNODE_LOG_LEVEL: 'info',
      CYNODE_DATABASE_POOL_MAX: '20',
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
    const params = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 16 };
    const cynode: Target = {
      url: `${control}/v1/api/call`,
      headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
      body: () => JSON.stringify({ provider: 'openai', operation: 'chat.completions', task_id: 'bench-task', params }),
    };
    const peer: Target = {
      url: `http://127.0.0.1:${portkeyPort}/v1/chat/completions`,
      headers: { authorization: `Bearer ${KEY}`, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${fakeUrl}/v1` },
      body: () => JSON.stringify(params),
    };
    const gateway = await measure(cynode, gw.child.pid!);
    const portkeyResult = await measure(peer, portkey.child.pid!);
    gw.child.kill('SIGTERM');
    await gw.exited;
    const breakdown = stageBreakdown(PROFILE_DIR, Math.min(500, CALLS) + CALLS);
    console.log(
      JSON.stringify(
        {
          bench: 'egress-cpu',
          concurrency: CONCURRENCY,
          note: 'direct routing, non-streamed chat completion, all three roles in one gateway process',
          cynode: gateway,
          portkey: portkeyResult,
          cpuRatioToPortkey: Math.round((gateway.cpuMsPerCall / portkeyResult.cpuMsPerCall) * 100) / 100,
          target: { cpuMsPerCallAtMost: 0.5, met: gateway.cpuMsPerCall <= 0.5 },
          cpuByStage: { note: 'sampled by the V8 profiler over the whole run (warm-up included), per call', ...breakdown },
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
    await db.drop();
    agent.destroy();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
