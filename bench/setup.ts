/**
 * Setting up what a benchmark runs against, so each one does not repeat it: the loopback fake
 * provider and the artifact tool server as their own processes, a gateway process on a fresh
 * PostgreSQL database with the bench's admin token, the credential, budget and preference
 * that direct routing needs, and workers registered with a PSK, one of them holding a lease
 * for the MCP tool calls of its task.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { ensureBundle } from '../test/helpers/bundle.js';
import { TEST_ADMIN_TOKEN } from '../test/helpers/config.js';
import { cliArgs, type GatewayProcess, startGatewayProcess } from '../test/helpers/gateway.js';
import { requestJson, startChild } from './lib.js';

/** The provider key the benchmarks store as a credential; the fake provider takes any key. */
export const BENCH_PROVIDER_KEY = 'sk-bench-0123456789abcdefghijklmnopqrstuv';

/** A helper process a benchmark started, and how to end it. */
export interface HelperProcess {
  url: string;
  pid: number;
  stop(): void;
}

/** The fake OpenAI/Anthropic server (bench/fake-provider-server.ts) in its own process. */
export async function startFakeProvider(): Promise<HelperProcess> {
  const fake = await startChild(['--import', 'tsx', join('bench', 'fake-provider-server.ts')], {}, /http:\/\/127\.0\.0\.1:\d+/);
  return {
    url: /http:\/\/127\.0\.0\.1:\d+/.exec(fake.output())![0],
    pid: fake.child.pid!,
    stop: () => void fake.child.kill('SIGTERM'),
  };
}

/** What a benchmark's gateway is started with. */
export interface BenchGatewayOptions {
  databaseUrl: string;
  /** The fake provider's URL, for api.call. */
  providerUrl?: string;
  /** MCP upstreams by name, for `/mcp`. */
  mcpUpstreams?: Record<string, string>;
  /** More CYNODE_* settings; they win over the defaults here. */
  env?: Record<string, string>;
  /** Arguments for node itself (a CPU profile: profileArgs in bench/profile.ts). */
  nodeArgs?: string[];
}

/** A gateway process under benchmark, its base URLs and an admin client. */
export interface BenchGateway {
  process: GatewayProcess;
  pid: number;
  /** Base URL of the control plane (admin API, Worker API, api.call). */
  control: string;
  /** URL of the MCP endpoint. */
  mcp: string;
  /** One admin API request with the bench's admin token; rejects on a status >= 400. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  admin(path: string, method?: string, body?: unknown, headers?: Record<string, string>): Promise<Record<string, any>>;
  /** SIGTERM and wait for the exit (a profile is written, settlements land); resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** `cynode-gateway serve` on the given database, with the settings the benchmarks share. */
export async function startBenchGateway(options: BenchGatewayOptions): Promise<BenchGateway> {
  const upstreams = Object.entries(options.mcpUpstreams ?? {}).map(([name, url]) => `${name}=${url}`);
  const gw = await startGatewayProcess(
    {
      DATABASE_URL: options.databaseUrl,
      CYNODE_BUNDLE: await ensureBundle(),
      CYNODE_LOG_LEVEL: 'info',
      CYNODE_DATABASE_POOL_MAX: '20',
      ...(options.providerUrl && { CYNODE_OPENAI_BASE_URL: options.providerUrl }),
      ...(upstreams.length > 0 && { CYNODE_MCP_UPSTREAMS: upstreams.join(',') }),
      ...options.env,
    },
    [],
    options.nodeArgs ?? [],
  );
  const control = `http://127.0.0.1:${gw.ports.control}`;
  let stopped: Promise<number | null> | undefined;
  return {
    process: gw,
    pid: gw.child.pid!,
    control,
    mcp: `http://127.0.0.1:${gw.ports.mcp}/mcp`,
    admin: (path, method, body, headers) => requestJson(`${control}${path}`, { method, body, headers, token: TEST_ADMIN_TOKEN }),
    stop: () => {
      if (!stopped) {
        gw.child.kill('SIGTERM');
        stopped = gw.exited;
      }
      return stopped;
    },
  };
}

/** What direct routing (orchestrator token) needs for `taskId`: the provider credential, a task budget, cloud allowed. */
export async function seedDirectRouting(gw: BenchGateway, taskId: string, limitUsd = 1_000_000): Promise<void> {
  await gw.admin('/v1/credentials', 'POST', { provider: 'openai', name: 'bench', secret: BENCH_PROVIDER_KEY });
  await gw.admin(`/v1/budgets/task/${encodeURIComponent(taskId)}`, 'PUT', { limit_usd: limitUsd });
  await gw.admin('/v1/preferences/system/default/cloud_allowed', 'PUT', { value: true });
}

/** The reference artifact tool server (`cynode-gateway artifact-server`) on `port`, trusting `gw`'s keys. */
export async function startArtifactUpstream(databaseUrl: string, gw: BenchGateway, port: number): Promise<HelperProcess> {
  const upstream = await startChild(
    cliArgs('artifact-server'),
    {
      DATABASE_URL: databaseUrl,
      CYNODE_ARTIFACTS_PORT: String(port),
      CYNODE_GATEWAY_URL: gw.control,
      CYNODE_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      CYNODE_POLICY_ALLOW_UNSIGNED: 'true',
      CYNODE_LOG_LEVEL: 'info',
    },
    /artifact server ready/,
  );
  return { url: `http://127.0.0.1:${port}/mcp`, pid: upstream.child.pid!, stop: () => void upstream.child.kill('SIGTERM') };
}

/** A cloud worker's registration report (the README's Example 1 shape). */
export function cloudWorkerReport(nodeId: string, labels: string[] = ['cloud']): Record<string, unknown> {
  return {
    node_id: nodeId,
    labels,
    region: 'us-east-1',
    inference_mode: 'provider_api',
    supported_providers: ['openai'],
    max_concurrency: 16,
  };
}

/** Registers one worker per report with a fresh PSK; resolves with their JWTs, in order. */
export async function registerWorkers(gw: BenchGateway, reports: Record<string, unknown>[]): Promise<string[]> {
  const psk = (await gw.admin('/v1/psks', 'POST', { name: `bench-${randomUUID().slice(0, 8)}` })).secret as string;
  const tokens: string[] = [];
  for (const report of reports) {
    const answer = await requestJson(`${gw.control}/register`, { body: report, headers: { 'x-cynode-psk': psk } });
    tokens.push(answer.token as string);
  }
  return tokens;
}

/**
 * Submits a job for `taskId` and leases it to the worker holding `token`: MCP tool calls on
 * that task need the caller's live lease. Call it before other workers poll, or one of them
 * may take the job. The job may run a day, so a long benchmark does not outlive it (the lease
 * TTL is the gateway's setting).
 */
export async function leaseTaskJob(gw: BenchGateway, token: string, taskId: string): Promise<string> {
  const job = await gw.admin(
    '/v1/jobs',
    'POST',
    { task_id: taskId, user_id: 'bench', payload: { kind: 'echo' }, timeout_ms: 86_400_000 },
    { 'idempotency-key': randomUUID() },
  );
  const leased = await requestJson(`${gw.control}/jobs/poll`, { token, body: {} });
  if (!(leased.jobs as { job_id: string }[]).some((j) => j.job_id === job.id))
    throw new Error(`the worker did not lease the job of ${taskId}`);
  return job.id as string;
}
