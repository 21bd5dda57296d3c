import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { readWorkerConfig, runWorker, WorkerConfigError } from '../../src/cloud-worker/index.js';
import { packageRoot } from '../../src/lib/package-root.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { tempDir } from '../helpers/config.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { call, eventually } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';
import { createPsk, submitJob } from '../helpers/workers.js';

// The reference worker runs real agents: `agent` jobs run the worker's own command (the README's
// ten-line OpenAI SDK agent) against the gateway's drop-in model API.

const KEY = `sk-proj-${randomBytes(16).toString('hex')}`;
let gw: BootedGateway;
let fake: FakeProvider;
let psk: string;

test.before(async () => {
  fake = await startFakeProvider();
  gw = await bootGateway({
    env: { CYNODE_OPENAI_BASE_URL: fake.url, CYNODE_WORKER_HEARTBEAT_INTERVAL_MS: '300', CYNODE_WORKER_POLL_INTERVAL_MS: '200' },
    roles: ['control', 'mcp', 'egress'],
  });
  const base = gw.url('control');
  psk = (await createPsk(base, 'agents')).secret;
  await call(base, '/v1/credentials', { json: { provider: 'openai', name: 'main', secret: KEY } });
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
});
test.after.always(async () => {
  await gw?.stop();
  await fake?.close();
});

const workerEnv = (nodeId: string, command: unknown) => ({
  CYNODE_ORCH_URL: gw.url('control'),
  CYNODE_MCP_URL: gw.url('mcp'),
  CYNODE_NODE_ID: nodeId,
  CYNODE_REGISTER_PSK: psk,
  CYNODE_LABELS: 'cloud,provider_openai',
  CYNODE_CAP_REGION: 'us-east-1',
  CYNODE_CAP_SUPPORTED_PROVIDERS: 'openai',
  CYNODE_AGENT_COMMAND: JSON.stringify(command),
});

test.serial('an agent job runs the OpenAI SDK agent through the gateway, audited under its worker and job', async (t) => {
  const base = gw.url('control');
  await call(base, '/v1/budgets/task/task-agent', { method: 'PUT', json: { limit_usd: 1 } });
  const submitted = await submitJob(base, {
    task_id: 'task-agent',
    requirements: { labels: ['cloud'] },
    payload: { kind: 'agent', input: { prompt: 'Plan the release' } },
  });
  const jobId = String(submitted.body.id);
  const logs = captureLogger();
  const config = readWorkerConfig(workerEnv('cloud-agent-01', ['node', join(packageRoot(), 'examples', 'openai-agent.mjs')]));
  t.is(await runWorker(config, logs.logger, { maxJobs: 1 }), 1);
  const job = (await call<Record<string, any>>(base, `/v1/jobs/${jobId}`)).body;
  t.is(job.state, 'succeeded', JSON.stringify(job));
  t.is(job.result.answer, 'Hello from the fake provider');
  t.true(job.result.usage.prompt_tokens > 0);
  const upstream = fake.received.at(-1)!;
  t.is(upstream.headers.authorization, `Bearer ${KEY}`, 'the provider got the stored key');
  t.is(upstream.body.messages[0].content, 'Plan the release');
  const rows = (await gw.gateway.db
    .knex('api_audit')
    .where({ job_id: jobId })
    .select('gate', 'subject_id', 'outcome', 'task_id')) as Record<string, string>[];
  t.deepEqual(rows.map((r) => r.gate).sort(), ['egress'], 'allowed calls are audited by the final gate');
  t.true(rows.every((r) => r.subject_id === 'cloud-agent-01' && r.task_id === 'task-agent' && r.outcome === 'ok'));
  t.false(JSON.stringify(job).includes(KEY) || logs.lines.join('\n').includes(KEY));
});

test.serial('the agent sees only the gateway variables (never the PSK) and is killed when its job is cancelled', async (t) => {
  const base = gw.url('control');
  const dir = tempDir('cynode-agent-');
  const pidFile = join(dir, 'pid');
  const envFile = join(dir, 'env');
  // An agent that records its pid and environment, then runs until it is killed.
  const script = `const fs=require('fs');const i=JSON.parse(fs.readFileSync(0,'utf8'));fs.writeFileSync(i.env,JSON.stringify(process.env));fs.writeFileSync(i.pid,String(process.pid));setInterval(()=>{},1000);`;
  const submitted = await submitJob(base, {
    task_id: 'task-agent-kill',
    requirements: { labels: ['cloud'] },
    payload: { kind: 'agent', input: { pid: pidFile, env: envFile } },
  });
  const jobId = String(submitted.body.id);
  const stop = new AbortController();
  const config = readWorkerConfig(workerEnv('cloud-agent-02', ['node', '-e', script]));
  const running = runWorker(config, captureLogger().logger, { signal: stop.signal, graceMs: 5000 });
  try {
    await eventually(async () => {
      try {
        return readFileSync(pidFile, 'utf8').length > 0;
      } catch {
        return false;
      }
    }, 15_000);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    const env = JSON.parse(readFileSync(envFile, 'utf8')) as Record<string, string>;
    t.regex(env.OPENAI_BASE_URL!, /\/openai\/v1$/);
    t.regex(env.ANTHROPIC_BASE_URL!, /\/anthropic$/);
    t.regex(env.CYNODE_MCP_URL!, /\/mcp$/);
    t.is(env.OPENAI_API_KEY, env.ANTHROPIC_API_KEY);
    t.is(env.CYNODE_JOB_ID, jobId);
    t.false(JSON.stringify(env).includes(psk), 'the worker PSK never reaches the agent');
    t.false(JSON.stringify(env).includes(KEY), 'nor the provider key: the agent holds only its agent token');
    t.is(env.CYNODE_REGISTER_PSK, undefined);
    t.is((await call(base, `/v1/jobs/${jobId}/cancel`, { method: 'POST', json: {} })).status, 200);
    await eventually(() => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    }, 10_000);
    t.pass('the agent process is gone');
  } finally {
    stop.abort();
    await running;
  }
});

test('an agent command is read from the worker configuration and checked', (t) => {
  const env = { ...workerEnv('cloud-agent-03', ['node', 'a.mjs']), CYNODE_MCP_URL: '' };
  const config = readWorkerConfig(env);
  t.deepEqual(config.agent?.command, ['node', 'a.mjs']);
  t.is(config.agent?.mcpUrl, `http://127.0.0.1:12083`, 'the MCP port on the control plane host by default');
  t.deepEqual(readWorkerConfig({ ...env, CYNODE_AGENT_COMMAND: 'python3 agent.py --fast' }).agent?.command, [
    'python3',
    'agent.py',
    '--fast',
  ]);
  t.throws(() => readWorkerConfig({ ...env, CYNODE_AGENT_COMMAND: '["node", 3]' }), {
    instanceOf: WorkerConfigError,
    message: /CYNODE_AGENT_COMMAND/,
  });
  t.throws(() => readWorkerConfig({ ...env, CYNODE_AGENT_COMMAND: '[oops' }), {
    instanceOf: WorkerConfigError,
    message: /CYNODE_AGENT_COMMAND/,
  });
  t.is(readWorkerConfig({ ...env, CYNODE_AGENT_COMMAND: '' }).agent, undefined);
});
