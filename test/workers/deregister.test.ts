import { spawn } from 'node:child_process';
import test, { type ExecutionContext } from 'ava';
import { readWorkerConfig, runWorker } from '../../src/cloud-worker/index.js';
import { packageRoot } from '../../src/lib/package-root.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { cliArgs } from '../helpers/gateway.js';
import { call, eventually } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';
import { createPsk, poll, register, registerWorker, submitJob } from '../helpers/workers.js';

// A clean exit frees the node id at once (POST /deregister); a worker that vanishes without
// one keeps its id held for workers.nodeHoldMs, as before.

let gw: BootedGateway;
let base: string;
let psk: string;

test.before(async () => {
  gw = await bootGateway({
    env: { CYNODE_WORKER_HEARTBEAT_INTERVAL_MS: '300', CYNODE_WORKER_POLL_INTERVAL_MS: '200' },
    roles: ['control'],
  });
  base = gw.url();
  psk = (await createPsk(base, 'exit')).secret;
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
});
test.after.always(() => gw?.stop());

const workerConfig = (nodeId: string, model: string) =>
  readWorkerConfig({
    CYNODE_ORCH_URL: base,
    CYNODE_NODE_ID: nodeId,
    CYNODE_REGISTER_PSK: psk,
    CYNODE_LABELS: 'cloud,provider_openai',
    CYNODE_CAP_REGION: 'us-east-1',
    CYNODE_CAP_SUPPORTED_PROVIDERS: 'openai',
    CYNODE_CAP_SUPPORTED_MODELS: model,
  });
const submitFor = async (model: string, taskId: string) =>
  String((await submitJob(base, { task_id: taskId, requirements: { models: [model] }, payload: { kind: 'echo', input: taskId } })).body.id);
const stateOf = async (id: string) => (await call<{ state: string }>(base, `/v1/jobs/${id}`)).body.state;

test.serial('the reference worker run twice in a row with the same node id registers at once the second time', async (t) => {
  const logs = captureLogger();
  const config = workerConfig('cloud-exit-01', 'exit-model');
  for (const run of [1, 2]) {
    const id = await submitFor('exit-model', `exit-${run}`);
    const started = Date.now();
    t.is(await runWorker(config, logs.logger, { maxJobs: 1 }), 1);
    t.is(await stateOf(id), 'succeeded');
    t.log(`run ${run}: registered, ran one job and deregistered in ${Date.now() - started} ms`);
    t.true(Date.now() - started < 10_000);
  }
  t.false(
    logs.lines.some((l) => l.includes('registration failed')),
    'the second run was never refused with node_id_taken',
  );
  const registrations = await gw.gateway.db.knex('capability_reports').where({ node_id: 'cloud-exit-01', reason: 'registration' });
  t.is(registrations.length, 2);
});

test.serial('a worker stopped (as on SIGTERM) drains, then deregisters; its id registers again at once', async (t) => {
  const logs = captureLogger();
  const stop = new AbortController();
  const id = await submitFor('term-model', 'term-1');
  const config = workerConfig('cloud-term-01', 'term-model');
  const running = runWorker(config, logs.logger, { signal: stop.signal });
  await eventually(async () => (await stateOf(id)) === 'succeeded', 10_000);
  stop.abort();
  t.is(await running, 1);
  const row = (await gw.gateway.db.knex('workers').where({ node_id: 'cloud-term-01' }).first()) as { session_ended_at: Date | null };
  t.truthy(row.session_ended_at, 'the session ended with the worker');
  const again = await register(base, psk, { ...config.report });
  t.is(again.status, 200, JSON.stringify(again.body));
});

/** `cynode-gateway worker` as its own process, once it has registered: a process to signal. */
async function startWorkerProcess(t: ExecutionContext, nodeId: string) {
  const env = {
    CYNODE_ORCH_URL: base,
    CYNODE_NODE_ID: nodeId,
    CYNODE_REGISTER_PSK: psk,
    CYNODE_LABELS: 'cloud,provider_openai',
    CYNODE_CAP_REGION: 'us-east-1',
    CYNODE_CAP_SUPPORTED_PROVIDERS: 'openai',
    CYNODE_LOG_LEVEL: 'warn',
  };
  const child = spawn(process.execPath, cliArgs('worker'), { cwd: packageRoot(), env: { ...process.env, ...env }, stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  t.teardown(() => void child.kill('SIGKILL'));
  const live = () => gw.gateway.db.knex('workers').where({ node_id: nodeId }).whereNull('session_ended_at').first();
  await eventually(async () => Boolean(await live()), 20_000);
  return { child, exited, report: readWorkerConfig(env).report };
}

test.serial('`cynode-gateway worker` sent SIGTERM exits 0 after deregistering; its id registers again at once', async (t) => {
  const worker = await startWorkerProcess(t, 'cloud-sigterm-01');
  worker.child.kill('SIGTERM');
  t.is(await worker.exited, 0);
  const again = await register(base, psk, worker.report);
  t.is(again.status, 200, JSON.stringify(again.body));
});

test.serial('a worker killed without deregistering is still held', async (t) => {
  const worker = await startWorkerProcess(t, 'cloud-crash-01');
  worker.child.kill('SIGKILL');
  await worker.exited;
  const res = await register(base, psk, worker.report);
  t.is(res.status, 409);
  t.is((res.body.error as { code: string }).code, 'node_id_taken');
  t.true((res.body.error as { details: { retry_after_s: number } }).details.retry_after_s > 50);
});

test.serial('POST /deregister ends the session: its token is refused and any lease it held is requeued at once', async (t) => {
  const worker = await registerWorker(base, psk, { node_id: 'cloud-leaver-01', supported_models: ['leaver-model'] });
  const id = await submitFor('leaver-model', 'leaver-1');
  await eventually(async () => (await poll(base, worker)).body.jobs.some((j) => j.job_id === id), 10_000);
  const bye = await call(base, '/deregister', { token: worker.token, method: 'POST' });
  t.is(bye.status, 200);
  t.deepEqual(bye.body, { node_id: 'cloud-leaver-01', deregistered: true });
  t.is(await stateOf(id), 'queued', 'requeued at once, not after the lease lapses');
  const after = await call(base, '/jobs/poll', { token: worker.token, json: { wait_ms: 0 } });
  t.is(after.status, 401);
  t.is((after.body.error as { code: string }).code, 'session_ended');
  t.is((await call(base, '/deregister', { token: worker.token, method: 'POST' })).status, 401);
  const listed = await call<{ workers: { nodeId: string; sessionEndedAt: string | null }[] }>(base, '/v1/workers');
  t.truthy(listed.body.workers.find((w) => w.nodeId === 'cloud-leaver-01')?.sessionEndedAt);

  // Another worker takes the job straight away.
  const next = await registerWorker(base, psk, { node_id: 'cloud-taker-01', supported_models: ['leaver-model'] });
  t.true((await poll(base, next, { wait_ms: 0 })).body.jobs.some((j) => j.job_id === id));
});
