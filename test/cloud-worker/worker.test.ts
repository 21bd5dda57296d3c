import test from 'ava';
import { readWorkerConfig, runWorker } from '../../src/cloud-worker/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call, eventually } from '../helpers/http.js';
import { runCli } from '../helpers/gateway.js';
import type { TestDatabase } from '../helpers/postgres.js';
import { captureLogger, startTestGateway } from '../helpers/start.js';
import { createPsk, submitJob } from '../helpers/workers.js';

let db: TestDatabase;
let gw: BootedGateway;
let base: string;
let psk: string;

// Tokens live 2 s here, so a worker running for longer must re-register on 401.
test.before(async () => {
  gw = await bootGateway({
    env: { CYNODE_WORKER_TOKEN_TTL_MS: '2000', CYNODE_WORKER_HEARTBEAT_INTERVAL_MS: '300', CYNODE_WORKER_POLL_INTERVAL_MS: '200' },
    roles: ['control'],
  });
  db = gw.db!;
  base = gw.url();
  psk = (await createPsk(base, 'example-1')).secret;
  // Cloud selection needs the user's preference as well as policy.
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
});
test.after.always(() => gw?.stop());

/** The README's Example 1 environment, verbatim, pointed at the test gateway. */
const seedEnv = (nodeId: string) => ({
  CYNODE_ORCH_URL: base,
  CYNODE_NODE_ID: nodeId,
  CYNODE_REGISTER_PSK: psk,
  CYNODE_LABELS: 'cloud,provider_openai',
  CYNODE_CAP_REGION: 'us-east-1',
  CYNODE_CAP_SUPPORTED_PROVIDERS: 'openai',
  CYNODE_CAP_RATE_LIMIT_RPM: '300',
});
const job = (id: string) => call<Record<string, any>>(base, `/v1/jobs/${id}`);

test.serial('Example 1 end to end: the reference worker registers, leases, runs and reports, then exits after --max-jobs', async (t) => {
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await submitJob(base, {
      task_id: `ex1-${i}`,
      requirements: { providers: ['openai'], labels: ['cloud'] },
      payload: { kind: 'echo', input: `hello ${i}`, delay_ms: 900 },
    });
    ids.push(String(res.body.id));
  }
  const started = Date.now();
  const run = await runCli(['worker', '--max-jobs', '3'], {
    ...seedEnv('cloud-us-east-1-01'),
    CYNODE_CAP_MAX_CONCURRENCY: '1',
    CYNODE_LOG_LEVEL: 'info',
  });
  t.is(run.code, 0, run.stderr);
  t.log(`3 jobs one after the other in ${Date.now() - started} ms`);
  for (const [i, id] of ids.entries()) {
    const view = await job(id);
    t.is(view.body.state, 'succeeded');
    t.deepEqual(view.body.result, { echo: `hello ${i}` });
    t.is(view.body.history[0].node_id, 'cloud-us-east-1-01');
  }
  const worker = (
    await call<{ workers: { nodeId: string; capabilities: Record<string, unknown> }[] }>(base, '/v1/workers')
  ).body.workers.find((w) => w.nodeId === 'cloud-us-east-1-01')!;
  t.deepEqual(worker.capabilities.labels, ['cloud', 'provider_openai']);
  t.is(worker.capabilities.region, 'us-east-1');
  t.deepEqual(worker.capabilities.supported_providers, ['openai']);
  t.deepEqual(worker.capabilities.rate_limits, { rpm: 300 });
  // Three jobs of 0.9 s each outlive the 2 s token: the worker re-registered on 401.
  const registrations = await gw.gateway.db.knex('capability_reports').where({ node_id: 'cloud-us-east-1-01', reason: 'registration' });
  t.true(registrations.length >= 2, `registered ${registrations.length} times`);
  t.false((run.stdout + run.stderr).includes(psk), 'the worker never logs its PSK');
  t.false(/eyJ[\w-]{10,}\.eyJ/.test(run.stdout + run.stderr), 'nor its JWT');
});

test.serial('a missing CYNODE_* variable is a usage error naming it', async (t) => {
  const run = await runCli(['worker'], { ...seedEnv('cloud-x'), CYNODE_REGISTER_PSK: '' });
  t.is(run.code, 2);
  t.regex(run.stderr, /CYNODE_REGISTER_PSK is required/);
  const bad = await runCli(['worker'], { ...seedEnv('cloud-x'), CYNODE_CAP_RATE_LIMIT_RPM: 'lots' });
  t.is(bad.code, 2);
  t.regex(bad.stderr, /CYNODE_CAP_RATE_LIMIT_RPM must be an integer/);
});

test.serial('jobs it cannot run fail permanently; a failing job reports a retryable error', async (t) => {
  const unknown = String(
    (await submitJob(base, { task_id: 'odd-1', requirements: { labels: ['cloud'] }, payload: { kind: 'teleport' } })).body.id,
  );
  const flaky = String(
    (
      await submitJob(base, {
        task_id: 'odd-2',
        max_attempts: 1,
        requirements: { labels: ['cloud'] },
        payload: { kind: 'fail', code: 'upstream_down', retryable: true },
      })
    ).body.id,
  );
  const run = await runCli(['worker', '--max-jobs', '2'], { ...seedEnv('cloud-us-east-1-02'), CYNODE_LOG_LEVEL: 'warn' });
  t.is(run.code, 0, run.stderr);
  const u = await job(unknown);
  t.is(u.body.state, 'failed');
  t.is(u.body.error.code, 'unsupported_job_kind');
  const f = await job(flaky);
  t.is(f.body.state, 'dead_lettered', 'retryable, but its one attempt is spent');
  t.is(f.body.error.code, 'upstream_down');
});

test.serial('a worker stops a job itself when it can no longer renew the lease, and the job is retried elsewhere', async (t) => {
  const own = await startTestGateway(
    {
      DATABASE_URL: db.url,
      CYNODE_JOB_LEASE_TTL_MS: '1500',
      CYNODE_WORKER_HEARTBEAT_INTERVAL_MS: '300',
      CYNODE_JOB_REAPER_INTERVAL_MS: '100',
      CYNODE_JOB_RETRY_BASE_MS: '0',
      CYNODE_JOB_RETRY_MAX_MS: '0',
    },
    ['control'],
  );
  const id = String(
    (await submitJob(own.url(), { task_id: 'cut-1', requirements: { models: ['cut-model'] }, payload: { kind: 'echo', delay_ms: 60_000 } }))
      .body.id,
  );
  const logs = captureLogger();
  const stop = new AbortController();
  const config = readWorkerConfig({
    ...seedEnv('cloud-us-east-1-03'),
    CYNODE_ORCH_URL: own.url(),
    CYNODE_CAP_SUPPORTED_MODELS: 'cut-model',
  });
  const running = runWorker(config, logs.logger, { signal: stop.signal, graceMs: 100 });
  await eventually(async () => (await call<{ state: string }>(own.url(), `/v1/jobs/${id}`)).body.state === 'leased', 10_000);

  // Cut the worker off: its heartbeats can no longer reach the gateway that leased the job.
  await own.gateway.stop();
  const stopped = await eventually(() => logs.lines.some((l) => l.includes('"why":"lease_unrenewable"')), 10_000);
  t.log(`job stopped by the worker ${stopped} ms after it lost the gateway`);
  stop.abort();
  t.is(await running, 1, 'the job counts as finished (stopped), not left running');

  // Meanwhile the lease lapses on the server side and the job goes back to the queue.
  const view = await call<{ state: string }>(base, `/v1/jobs/${id}`);
  t.true(['queued', 'leased'].includes(view.body.state));
  await gw.gateway.leases.reap();
  await eventually(async () => (await call<{ state: string }>(base, `/v1/jobs/${id}`)).body.state === 'queued', 5000);
  t.false(
    logs.lines.some((l) => l.includes(psk)),
    'no PSK in the worker log',
  );
});
