import test from 'ava';
import pino from 'pino';
import { type ArtifactServer, startArtifactServer } from '../../src/artifacts/server.js';
import { createFinalGate, type FinalGate } from '../../src/final-gate/index.js';
import { LEASE_REUSE_MS } from '../../src/mcp/leases.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { call, eventually, freePort } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

// Two replicas on one database: `a` serves MCP, `b` is where the worker's leases end.
let tdb: TestDatabase;
let a: BootedGateway;
let b: BootedGateway;
let gate: FinalGate;
let artifacts: ArtifactServer;
let worker: TestWorker;

test.before(async () => {
  tdb = await createTestDatabase();
  const port = await freePort();
  a = await bootGateway({
    database: tdb,
    env: { CYNODE_MCP_UPSTREAMS: `artifacts=http://127.0.0.1:${port}/mcp` },
    roles: ['control', 'mcp'],
  });
  b = await bootGateway({ database: tdb, roles: ['control'] });
  gate = createFinalGate({
    gatewayUrl: a.url('control'),
    audience: 'mcp-upstream:artifacts',
    bundleToken: TEST_ADMIN_TOKEN,
    logger: pino({ level: 'silent' }),
  });
  await gate.ready;
  artifacts = await startArtifactServer({
    knex: a.gateway.db.knex,
    gate,
    logger: pino({ level: 'silent' }),
    host: '127.0.0.1',
    port,
    maxBodyBytes: 1_048_576,
  });
  await call(b.url(), '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  worker = await registerWorker(b.url(), (await createPsk(b.url())).secret, { node_id: 'cloud-us-east-1-07' });
});
test.after.always(async () => {
  await artifacts?.close();
  gate?.close();
  await a?.stop();
  await b?.stop();
  await tdb?.drop();
});

/** One tools/call through replica `a`'s /mcp as the worker: the JSON-RPC answer. */
async function listThroughA(
  task: string,
): Promise<{ result?: { isError?: boolean }; error?: { code: number; data?: { reasons?: string[] } } }> {
  const res = await fetch(`${a.url('mcp')}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${worker.token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'artifacts.artifact_list', arguments: { task_id: task } },
    }),
  });
  return (await res.json()) as never;
}

/** A job of `task` leased by the worker on replica `b`, already used (and so remembered) through `a`. */
async function leasedAndUsed(task: string) {
  const jobId = String((await submitJob(b.url(), { task_id: task, user_id: 'u', requirements: { labels: ['cloud'] } })).body.id);
  let leaseId = '';
  await eventually(async () => {
    const lease = (await poll(b.url(), worker)).body.jobs.find((j) => j.job_id === jobId);
    leaseId = lease?.lease_id ?? '';
    return lease !== undefined;
  }, 10_000);
  for (let i = 0; i < 3; i++) {
    const ok = await listThroughA(task);
    if (ok.error || ok.result?.isError) throw new Error(`the leased call failed: ${JSON.stringify(ok)}`);
  }
  return { jobId, leaseId };
}

/** How long after `end` resolved replica `a` refused the task's calls as `lease_required`. */
async function refusedAfter(task: string, end: () => Promise<unknown>): Promise<number> {
  await end();
  const started = Date.now();
  await eventually(
    async () => {
      const answer = await listThroughA(task);
      return answer.error?.code === -32001 && answer.error.data?.reasons?.includes('lease_required') === true;
    },
    5000,
    5,
  );
  return Date.now() - started;
}

test.serial('a result reported on another replica ends the lease for MCP calls within the reuse time', async (t) => {
  const { jobId, leaseId } = await leasedAndUsed('task-lease-result');
  const took = await refusedAfter('task-lease-result', async () => {
    const res = await call(b.url(), '/result', {
      token: worker.token,
      json: { job_id: jobId, lease_id: leaseId, status: 'succeeded', result: {} },
    });
    if (res.status !== 200) throw new Error(`result refused: ${res.status} ${JSON.stringify(res.body)}`);
  });
  t.log(`refused ${took} ms after the end`);
  t.true(took < LEASE_REUSE_MS, `refused after ${took} ms`);
});

test.serial('a job cancelled on another replica is refused for MCP calls within the reuse time', async (t) => {
  const { jobId } = await leasedAndUsed('task-lease-cancel');
  const took = await refusedAfter('task-lease-cancel', async () => {
    const res = await call(b.url(), `/v1/jobs/${jobId}/cancel`, { json: {} });
    if (res.status !== 200) throw new Error(`cancel refused: ${res.status} ${JSON.stringify(res.body)}`);
  });
  t.log(`refused ${took} ms after the end`);
  t.true(took < LEASE_REUSE_MS, `refused after ${took} ms`);
});
