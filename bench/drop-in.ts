/**
 * The streamed rows of `npm run bench:egress` for the drop-in model APIs: an SDK-shaped
 * streamed request through `/openai/v1/chat/completions` and `/anthropic/v1/messages` on the
 * MCP port, keyed by an agent token for a job a registered worker leases (heartbeating it),
 * against the same request sent to the fake provider directly, and through Portkey where it
 * streams. Open loop at BENCH_DROPIN_RATE (20/s: under the shipped policy's 600 calls per
 * minute for one worker; each surface has a worker of its own) for BENCH_DROPIN_SECONDS (8).
 * Measured: time to the first byte of the stream (TTFT) and to its end, added over direct at
 * p50/p99; then the gateway's CPU per streamed call (/proc) over BENCH_DROPIN_CPU_CALLS (300)
 * calls in a closed loop, 8 at a time (so idle time is not counted per call). Targets: TTFT added ≤ 1 ms (the
 * provider's plus at most a millisecond), CPU ≤ 0.5 ms per streamed call.
 */
import http from 'node:http';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { agent, closedLoop, openLoop, percentiles, processCpuMs, requestJson, type Verdict } from './lib.js';

const RATE = Number(process.env.BENCH_DROPIN_RATE ?? 20);
const SECONDS = Number(process.env.BENCH_DROPIN_SECONDS ?? 8);
const WARMUP = 40;
const CPU_CALLS = Number(process.env.BENCH_DROPIN_CPU_CALLS ?? 300);

/** One streamed request: where, with which headers and body. */
interface StreamTarget {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/** Sends one streamed request; resolves with the time to its first body byte and to its end, ms. */
function sendStream(target: StreamTarget): Promise<{ ttft: number; total: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const headers = { ...target.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(target.body) };
    const req = http.request(target.url, { agent, method: 'POST', headers }, (res) => {
      let ttft = -1;
      res.on('data', () => {
        if (ttft < 0) ttft = performance.now() - started;
      });
      res.on('end', () => {
        if ((res.statusCode ?? 500) >= 300) return reject(new Error(`status ${res.statusCode}`));
        resolve({ ttft, total: performance.now() - started });
      });
    });
    req.on('error', reject);
    req.end(target.body);
  });
}

/** Open-loop load of one target: TTFT and total latency samples, errors. */
async function streamLoad(target: StreamTarget, rate: number, calls: number) {
  const ttft: number[] = [];
  const total: number[] = [];
  const { errors, firstError } = await openLoop(calls, rate, async () => {
    const s = await sendStream(target);
    ttft.push(s.ttft);
    total.push(s.total);
  });
  return { ttft: percentiles(ttft), total: percentiles(total), errors, ...(firstError && { firstError }) };
}

/** A worker registered for the benchmark, leasing one job, and an agent token for it; `stop` ends its heartbeats. */
async function leasedAgent(control: string, nodeId: string): Promise<{ token: string; stop: () => void }> {
  const admin = { token: TEST_ADMIN_TOKEN };
  const psk = await requestJson(`${control}/v1/psks`, { ...admin, body: { name: nodeId } });
  const report = {
    node_id: nodeId,
    labels: ['cloud', 'provider_openai', 'provider_anthropic'],
    region: 'us-east-1',
    inference_mode: 'provider_api',
    supported_providers: ['openai', 'anthropic'],
    max_concurrency: 4,
  };
  const { token: workerToken } = await requestJson(`${control}/register`, {
    headers: { 'x-cynode-psk': String(psk.secret) },
    body: report,
  });
  await requestJson(`${control}/v1/budgets/task/bench-drop-in`, { ...admin, method: 'PUT', body: { limit_usd: 1_000_000 } });
  const job = await requestJson(`${control}/v1/jobs`, {
    ...admin,
    headers: { 'idempotency-key': nodeId },
    body: { task_id: 'bench-drop-in', user_id: 'bench', requirements: { labels: ['cloud'] }, payload: { kind: 'agent' } },
  });
  let lease: { job_id: string; lease_id: string } | undefined;
  for (let i = 0; i < 50 && !lease; i++) {
    const polled = await requestJson(`${control}/jobs/poll`, { token: String(workerToken), body: { wait_ms: 1000 } });
    lease = (polled.jobs as { job_id: string; lease_id: string }[]).find((j) => j.job_id === job.id);
  }
  if (!lease) throw new Error('the benchmark worker never leased its job');
  const beat = setInterval(() => {
    void requestJson(`${control}/status`, {
      token: String(workerToken),
      body: { health: { status: 'ok' }, jobs: [{ job_id: lease.job_id, lease_id: lease.lease_id }] },
    }).catch(() => undefined);
  }, 3000);
  const issued = await requestJson(`${control}/v1/agent-tokens`, {
    token: String(workerToken),
    body: { agent_type: 'sandbox', job_id: lease.job_id },
  });
  return { token: String(issued.token), stop: () => clearInterval(beat) };
}

const round = (v: number) => Math.round(v * 1000) / 1000;

/**
 * Measures the drop-in surfaces' streams beside direct and Portkey; resolves with the figures
 * and their verdicts. `gatewayPid` is the process whose CPU is counted.
 */
export async function measureDropIn(o: {
  control: string;
  mcp: string;
  fakeUrl: string;
  portkeyUrl: string;
  providerKey: string;
  gatewayPid: number;
}): Promise<{ scenarios: Record<string, unknown>; verdicts: Verdict[] }> {
  const agents = {
    openai: await leasedAgent(o.control, 'bench-drop-in-openai'),
    anthropic: await leasedAgent(o.control, 'bench-drop-in-anthropic'),
  };
  const token = agents.openai.token;
  const anthropicToken = agents.anthropic.token;
  try {
    const chat = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 16, stream: true });
    const messages = JSON.stringify({
      model: 'claude-3-5-haiku-latest',
      messages: [{ role: 'user', content: 'Say hello' }],
      max_tokens: 16,
      stream: true,
    });
    const anthropicHeaders = { 'anthropic-version': '2023-06-01' };
    const surfaces = {
      openai: {
        direct: { url: `${o.fakeUrl}/v1/chat/completions`, headers: { authorization: `Bearer ${o.providerKey}` }, body: chat },
        portkey: {
          url: `${o.portkeyUrl}/v1/chat/completions`,
          headers: { authorization: `Bearer ${o.providerKey}`, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${o.fakeUrl}/v1` },
          body: chat,
        },
        cynode: { url: `${o.mcp}/openai/v1/chat/completions`, headers: { authorization: `Bearer ${token}` }, body: chat },
      },
      anthropic: {
        direct: { url: `${o.fakeUrl}/v1/messages`, headers: { 'x-api-key': o.providerKey, ...anthropicHeaders }, body: messages },
        portkey: {
          url: `${o.portkeyUrl}/v1/messages`,
          headers: {
            'x-api-key': o.providerKey,
            ...anthropicHeaders,
            'x-portkey-provider': 'anthropic',
            'x-portkey-custom-host': `${o.fakeUrl}/v1`,
          },
          body: messages,
        },
        cynode: { url: `${o.mcp}/anthropic/v1/messages`, headers: { 'x-api-key': anthropicToken, ...anthropicHeaders }, body: messages },
      },
    };
    const scenarios: Record<string, unknown> = {};
    const verdicts: Verdict[] = [];
    const calls = Math.round(RATE * SECONDS);
    for (const [name, paths] of Object.entries(surfaces)) {
      const results: Record<string, Awaited<ReturnType<typeof streamLoad>>> = {};
      for (const [path, target] of Object.entries(paths)) {
        await streamLoad(target, RATE, WARMUP);
        results[path] = await streamLoad(target, RATE, calls);
      }
      const cynode = paths.cynode;
      const before = processCpuMs(o.gatewayPid);
      const loop = await closedLoop(
        { url: cynode.url, headers: cynode.headers, body: () => cynode.body },
        { calls: CPU_CALLS, concurrency: 8, stream: true },
      );
      const cpuMsPerCall = round((processCpuMs(o.gatewayPid) - before) / CPU_CALLS);
      const added = (path: 'cynode' | 'portkey', q: 'p50' | 'p99') =>
        results[path]!.errors === 0 ? round(results[path]!.ttft[q] - results.direct!.ttft[q]) : null;
      const surface = name === 'openai' ? '/openai/v1/chat/completions' : '/anthropic/v1/messages';
      scenarios[name] = {
        surface,
        rate: RATE,
        calls,
        ms: results,
        ttftAddedMs: {
          cynode: { p50: added('cynode', 'p50'), p99: added('cynode', 'p99') },
          portkey: { p50: added('portkey', 'p50'), p99: added('portkey', 'p99') },
        },
        cynodeCpuMsPerStreamedCall: cpuMsPerCall,
        cpuLoop: { calls: CPU_CALLS, concurrency: 8, ...loop },
      };
      const ttft = added('cynode', 'p50');
      const peer = added('portkey', 'p50');
      verdicts.push(
        {
          path: `drop-in ${surface} streamed at ${RATE}/s`,
          measure: 'TTFT added p50 (ms)',
          cynode: ttft ?? -1,
          peer,
          ratio: peer !== null && peer > 0 && ttft !== null ? round(ttft / peer) : null,
          target: '≤ 1 ms',
          met: ttft !== null && ttft <= 1,
        },
        {
          path: `drop-in ${surface} streamed at ${RATE}/s`,
          measure: 'gateway CPU per streamed call, ms',
          cynode: cpuMsPerCall,
          peer: null,
          ratio: null,
          target: '≤ 0.5 ms',
          met: loop.errors === 0 && cpuMsPerCall <= 0.5,
        },
      );
    }
    return { scenarios, verdicts };
  } finally {
    agents.openai.stop();
    agents.anthropic.stop();
  }
}
