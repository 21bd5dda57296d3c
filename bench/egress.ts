/**
 * `npm run bench:egress`: what the full api.call path adds to a provider call, printed as
 * one JSON object. One loopback fake OpenAI (its own process) answers three paths, at fixed
 * request rates (open loop: requests leave on schedule whether or not earlier ones returned):
 *  - direct: the client calls the fake provider itself, key in hand;
 *  - portkey: through Portkey's open-source gateway (`@portkey-ai/gateway`, pinned), the peer;
 *  - cynode: `POST /v1/api/call` with the orchestrator token (direct routing). That is the
 *    first gate (api.call policy, budgets read, decision logged), the in-process hand-off to the
 *    egress role, the final gate (decide again), credential lookup, the atomic rate-limit and
 *    budget reservation in PostgreSQL, the provider call, settlement and the audit record.
 * Added latency = a path's percentile minus direct's at the same rate. Targets: p50 ≤ 1 ms and
 * p99 ≤ 5 ms added, and no more than Portkey adds. Scenarios: a plain chat completion, and a
 * streamed one (the gateway assembles the stream; Portkey passes it through). Then the streams of
 * the drop-in model APIs (`bench/drop-in.ts`: TTFT added and CPU per streamed call, through
 * `/openai` and `/anthropic` with an agent token; BENCH_DROPIN=0 skips them). Then the knee of
 * each (non-streamed): the highest step whose added p99 stays ≤ 10 ms with no errors, cynode's
 * at least Portkey's (BENCH_KNEE=0 skips it).
 */
import { join } from 'node:path';
import { ensureBundle } from '../test/helpers/bundle.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { startGatewayProcess } from '../test/helpers/gateway.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { measureDropIn } from './drop-in.js';
import { profileArgs, stageBreakdown } from './profile.js';
import { agent, findKnee, freePort, load, percentiles, send, startChild, type Target, type Verdict } from './lib.js';

const RATES = (process.env.BENCH_RATES ?? '50,150,300').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const WARMUP_SECONDS = 2;
const KNEE = process.env.BENCH_KNEE !== '0';
const KNEE_SECONDS = Number(process.env.BENCH_KNEE_SECONDS ?? 5);
const PROFILE_DIR = join('build', 'bench-profiles', 'egress');

const ratioOf = (cynode: number, peer: number | null) => (peer === null || peer <= 0 ? null : Math.round((cynode / peer) * 100) / 100);

/** The added-latency rows of one scenario at one rate: p50 (≤ 1 ms and ≤ Portkey's) and p99 (≤ 5 ms). */
function latencyVerdicts(
  path: string,
  cynode: { p50: number; p99: number; errors: number },
  portkey: { p50: number; p99: number; errors: number },
): Verdict[] {
  const peer = (v: number) => (portkey.errors === 0 ? v : null);
  const p50Peer = peer(portkey.p50);
  return [
    {
      path,
      measure: 'added latency p50 (ms)',
      cynode: cynode.p50,
      peer: p50Peer,
      ratio: ratioOf(cynode.p50, p50Peer),
      target: "≤ 1 ms and ≤ Portkey's",
      met: cynode.errors === 0 && cynode.p50 <= 1 && (p50Peer === null || cynode.p50 <= p50Peer),
    },
    {
      path,
      measure: 'added latency p99 (ms)',
      cynode: cynode.p99,
      peer: peer(portkey.p99),
      ratio: ratioOf(cynode.p99, peer(portkey.p99)),
      target: '≤ 5 ms',
      met: cynode.errors === 0 && cynode.p99 <= 5,
    },
  ];
}
const KEY = 'sk-bench-0123456789abcdefghijklmnopqrstuv';

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
      CYNODE_ANTHROPIC_BASE_URL: fakeUrl,
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
    await admin('/v1/credentials', 'POST', { provider: 'anthropic', name: 'bench', secret: KEY });
    await admin('/v1/budgets/task/bench-task', 'PUT', { limit_usd: 1_000_000 });
    await admin('/v1/preferences/system/default/cloud_allowed', 'PUT', { value: true });

    let cynodeRequests = 0;
    const verdicts: Verdict[] = [];
    const params = (stream: boolean) => ({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello' }],
      max_tokens: 16,
      ...(stream && { stream: true }),
    });
    const targets: Record<'direct' | 'portkey' | 'cynode', Target> = {
      direct: {
        url: `${fakeUrl}/v1/chat/completions`,
        headers: { authorization: `Bearer ${KEY}` },
        body: (s) => JSON.stringify(params(s)),
      },
      portkey: {
        url: `http://127.0.0.1:${portkeyPort}/v1/chat/completions`,
        headers: { authorization: `Bearer ${KEY}`, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${fakeUrl}/v1` },
        body: (s) => JSON.stringify(params(s)),
      },
      cynode: {
        url: `${control}/v1/api/call`,
        headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
        body: (s) => {
          cynodeRequests++;
          return JSON.stringify({ provider: 'openai', operation: 'chat.completions', task_id: 'bench-task', params: params(s) });
        },
      },
    };
    // Every path answers before anything is measured.
    for (const [name, target] of Object.entries(targets))
      await send(target, false).catch((err: Error) => Promise.reject(new Error(`${name}: ${err.message}`)));

    const scenarios: Record<string, unknown> = {};
    for (const stream of [false, true]) {
      const byRate: Record<string, unknown> = {};
      for (const rate of RATES) {
        const paths: Record<string, { p50: number; p99: number; n: number; errors: number; firstError?: string }> = {};
        for (const [name, target] of Object.entries(targets)) {
          await load(target, stream, rate, WARMUP_SECONDS);
          const { latencies, errors, firstError } = await load(target, stream, rate, SECONDS);
          paths[name] = { ...percentiles(latencies), errors, ...(firstError && { firstError }) };
        }
        const added = (name: 'portkey' | 'cynode') => ({
          p50: Math.round((paths[name]!.p50 - paths.direct!.p50) * 1000) / 1000,
          p99: Math.round((paths[name]!.p99 - paths.direct!.p99) * 1000) / 1000,
        });
        const cynode = added('cynode');
        const portkeyAdded = added('portkey');
        verdicts.push(
          ...latencyVerdicts(
            `api.call ${stream ? 'streamed' : 'non-streamed'} at ${rate}/s`,
            { ...cynode, errors: paths.cynode!.errors },
            { ...portkeyAdded, errors: paths.portkey!.errors },
          ),
        );
        byRate[`${rate}/s`] = {
          ms: paths,
          addedMs: { cynode, portkey: portkeyAdded },
          ratioToPortkey: {
            p50: portkeyAdded.p50 > 0 ? Math.round((cynode.p50 / portkeyAdded.p50) * 100) / 100 : null,
            p99: portkeyAdded.p99 > 0 ? Math.round((cynode.p99 / portkeyAdded.p99) * 100) / 100 : null,
          },
          targets: {
            p50AddedAtMost1ms: cynode.p50 <= 1,
            p99AddedAtMost5ms: cynode.p99 <= 5,
            noMoreThanPortkey: cynode.p50 <= portkeyAdded.p50 && cynode.p99 <= portkeyAdded.p99,
          },
        };
      }
      scenarios[stream ? 'chatStreamed' : 'chat'] = byRate;
    }
    const dropIn =
      process.env.BENCH_DROPIN === '0'
        ? undefined
        : await measureDropIn({
            control,
            mcp: `http://127.0.0.1:${gw.ports.mcp}`,
            fakeUrl,
            portkeyUrl: `http://127.0.0.1:${portkeyPort}`,
            providerKey: KEY,
            gatewayPid: gw.child.pid!,
          });
    if (dropIn) verdicts.push(...dropIn.verdicts);
    const knees = KNEE
      ? {
          cynode: await findKnee(targets.cynode, targets.direct, { seconds: KNEE_SECONDS }),
          portkey: await findKnee(targets.portkey, targets.direct, { seconds: KNEE_SECONDS }),
        }
      : undefined;
    if (knees) {
      verdicts.push({
        path: 'api.call non-streamed',
        measure: 'knee (calls/s, added p99 ≤ 10 ms, 0 errors)',
        cynode: knees.cynode.knee,
        peer: knees.portkey.knee,
        ratio: ratioOf(knees.cynode.knee, knees.portkey.knee),
        target: "≥ Portkey's",
        met: knees.cynode.knee >= knees.portkey.knee,
      });
    }
    // Prepaid blocks hold their room until their draw window ends and their last call settles.
    const budgetNow = () =>
      fetch(`${control}/v1/budgets/task/bench-task`, { headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}` } }).then(
        (r) => r.json() as Promise<Record<string, number>>,
      );
    let spent = await budgetNow();
    for (let i = 0; i < 50 && spent.reserved_usd !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      spent = await budgetNow();
    }
    const stopAndBreakdown = async () => {
      gw.child.kill('SIGTERM');
      await gw.exited;
      return stageBreakdown(PROFILE_DIR, cynodeRequests);
    };
    console.log(
      JSON.stringify(
        {
          bench: 'egress',
          machine: { cpus: (await import('node:os')).cpus().length },
          secondsPerPoint: SECONDS,
          peer: `@portkey-ai/gateway ${(await import('../node_modules/@portkey-ai/gateway/package.json', { with: { type: 'json' } })).default.version}`,
          scenarios: { ...scenarios, ...(dropIn && { dropInStreamed: dropIn.scenarios }) },
          ...(knees && { knees }),
          ledger: { spentUsd: spent.spent_usd, reservedUsd: spent.reserved_usd },
          verdicts,
          ...(verdicts.some((v) => !v.met) && {
            cpuByStage: { note: 'sampled over the whole run, per api.call', ...(await stopAndBreakdown()) },
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
    await db.drop();
    agent.destroy();
  }
}

await main();
