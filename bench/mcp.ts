/**
 * `npm run bench:mcp`: what the MCP gateway adds to a tool call, printed as one JSON object.
 * One upstream, the reference artifact server (`cynode-gateway artifact-server`, its own
 * process, final gate on), answers `artifact_get` two ways, at fixed rates (open loop):
 *  - direct: a JSON-RPC `tools/call` straight to the upstream, with a forward token the bench
 *    signs before the clock starts (the upstream takes nothing without one);
 *  - gateway: the same call as a worker to `/mcp` on the gateway (`artifacts.artifact_get`):
 *    worker JWT, the caller's live lease looked up, argument schema check, `mcp.tool.invoke`
 *    decided and logged, a forward token signed, the upstream's final gate, the tool audit.
 * Added latency = the gateway path's percentile minus the direct one's at the same rate.
 */
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { FORWARD_TOKEN_HEADER, signForwardToken } from '../src/final-gate/index.js';
import { createKeyStore } from '../src/keys/index.js';
import { ENTRYPOINTS } from '../src/policy/index.js';
import { connectAndMigrate } from '../src/storage/index.js';
import { ensureBundle } from '../test/helpers/bundle.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { cliArgs, startGatewayProcess } from '../test/helpers/gateway.js';
import { createTestDatabase } from '../test/helpers/postgres.js';
import { agent, freePort, load, percentiles, send, startChild, type Target } from './lib.js';

const RATES = (process.env.BENCH_RATES ?? '100,300').split(',').map(Number);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const WARMUP_SECONDS = 2;
const TASK = 'bench-task';

async function main() {
  const db = await createTestDatabase();
  const upstreamPort = await freePort();
  const gw = await startGatewayProcess({
    DATABASE_URL: db.url,
    CYNODE_BUNDLE: await ensureBundle(),
    CYNODE_LOG_LEVEL: 'info',
    CYNODE_DATABASE_POOL_MAX: '20',
    CYNODE_MCP_UPSTREAMS: `artifacts=http://127.0.0.1:${upstreamPort}/mcp`,
    CYNODE_JOB_LEASE_TTL_MS: '3600000',
  });
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
    const gateway: Target = {
      url: `http://127.0.0.1:${gw.ports.mcp}/mcp`,
      headers: { authorization: `Bearer ${registered.token}`, accept: 'application/json, text/event-stream' },
      body: () => rpc('artifacts.artifact_get'),
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

    const rates: Record<string, unknown> = {};
    for (const rate of RATES) {
      const paths: Record<string, { p50: number; p99: number; n: number; errors: number; firstError?: string }> = {};
      for (const [name, target] of Object.entries({ direct, gateway })) {
        await load(target, false, rate, WARMUP_SECONDS);
        const { latencies, errors, firstError } = await load(target, false, rate, SECONDS);
        paths[name] = { ...percentiles(latencies), errors, ...(firstError && { firstError }) };
      }
      rates[`${rate}/s`] = {
        ms: paths,
        addedMs: {
          p50: Math.round((paths.gateway!.p50 - paths.direct!.p50) * 1000) / 1000,
          p99: Math.round((paths.gateway!.p99 - paths.direct!.p99) * 1000) / 1000,
        },
      };
    }
    console.log(JSON.stringify({ bench: 'mcp', tool: 'artifacts.artifact_get', secondsPerPoint: SECONDS, rates }, null, 2));
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
