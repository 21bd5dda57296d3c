import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call, eventually } from '../helpers/http.js';
import { createPsk, poll, register, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

// Quarantine on one replica: the node's worker token and the agent tokens derived from it
// are refused at once with node_quarantined, its lease goes back to the queue for another
// worker, it cannot register until released, and every change is an append-only audit row.

let gw: BootedGateway;
let base: string;
let psk: string;

test.before(async () => {
  gw = await bootGateway({ roles: ['control', 'mcp'] });
  base = gw.url('control');
  psk = (await createPsk(base, 'quarantine')).secret;
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
});
test.after.always(() => gw?.stop());

const codeOf = (body: Record<string, unknown>) => (body.error as { code?: string } | undefined)?.code;
const initialize = (token: string) =>
  call(gw.url('mcp'), '/mcp', {
    token,
    headers: { accept: 'application/json, text/event-stream' },
    json: {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'q', version: '1' } },
    },
  });
const gauge = async () => Number(/^cynode_workers_quarantined (\d+)$/m.exec(await (await fetch(`${base}/metrics`)).text())?.[1]);

async function leased(worker: TestWorker, model: string): Promise<string> {
  const id = String(
    (await submitJob(base, { task_id: `task-${model}`, requirements: { models: [model] }, payload: { kind: 'echo', input: model } })).body
      .id,
  );
  await eventually(async () => (await poll(base, worker)).body.jobs.some((j) => j.job_id === id), 10_000);
  return id;
}

test.serial('a quarantined worker is refused with node_quarantined, its agents too, and its lease goes to another worker', async (t) => {
  const worker = await registerWorker(base, psk, { node_id: 'cloud-q-01', supported_models: ['q-model'] });
  const jobId = await leased(worker, 'q-model');
  const agent = await call<{ token: string }>(base, '/v1/agent-tokens', {
    token: worker.token,
    json: { agent_type: 'sandbox', job_id: jobId },
  });
  t.is(agent.status, 201);
  t.is((await initialize(agent.body.token)).status, 200, 'the agent works before');

  const q = await call<Record<string, any>>(base, '/v1/workers/cloud-q-01/quarantine', { json: { reason: 'key leaked' } });
  t.is(q.status, 200, JSON.stringify(q.body));
  t.like(q.body.quarantine, { reason: 'key leaked', by: 'admin' });

  const status = await call(base, '/status', { token: worker.token, json: { health: { ok: true } } });
  t.is(status.status, 403);
  t.is(codeOf(status.body), 'node_quarantined');
  const mcp = await initialize(agent.body.token);
  t.is(mcp.status, 403);
  t.is(codeOf(mcp.body), 'node_quarantined');
  t.is((await call<{ state: string }>(base, `/v1/jobs/${jobId}`)).body.state, 'queued', 'requeued at once');

  const other = await registerWorker(base, psk, { node_id: 'cloud-q-02', supported_models: ['q-model'] });
  const taken = await poll(base, other, { wait_ms: 0 });
  const lease = taken.body.jobs.find((j) => j.job_id === jobId);
  t.truthy(lease, 'another worker picks it up');
  const done = await call(base, '/result', {
    token: other.token,
    json: { job_id: jobId, lease_id: lease!.lease_id, status: 'succeeded', result: { ok: true } },
  });
  t.is(done.status, 200);
  t.is((await call<{ state: string }>(base, `/v1/jobs/${jobId}`)).body.state, 'succeeded', 'nothing lost');
});

test.serial('a quarantined node cannot register until released; release lets it register, its old token stays ended', async (t) => {
  const worker = await registerWorker(base, psk, { node_id: 'cloud-q-03' });
  t.is((await call(base, '/v1/workers/cloud-q-03/quarantine', { json: { reason: 'suspicious' } })).status, 200);
  const again = await register(base, psk, worker.report, worker.token);
  t.is(again.status, 403);
  t.is(codeOf(again.body), 'node_quarantined');

  const listed = await call<{ workers: { nodeId: string; quarantine: { reason: string } | null }[] }>(base, '/v1/workers');
  t.is(listed.body.workers.find((w) => w.nodeId === 'cloud-q-03')?.quarantine?.reason, 'suspicious');
  t.is(await gauge(), 2);

  const released = await call<Record<string, unknown>>(base, '/v1/workers/cloud-q-03/release', { method: 'POST' });
  t.is(released.status, 200);
  t.is(released.body.quarantine, null);
  const old = await call(base, '/status', { token: worker.token, json: { health: { ok: true } } });
  t.is(old.status, 401);
  t.is(codeOf(old.body), 'session_ended', 'a released node registers afresh');
  t.is((await register(base, psk, worker.report)).status, 200, 'free at once, no hold');
  t.is(await gauge(), 1);
});

test.serial('quarantine and release are audited append-only in worker_audit, hash-chained', async (t) => {
  const knex = gw.gateway.db.knex;
  const rows = (await knex('worker_audit').where({ node_id: 'cloud-q-03' }).orderBy('seq')) as Record<string, unknown>[];
  t.deepEqual(
    rows.map((r) => [r.action, r.reason, r.actor]),
    [
      ['quarantine', 'suspicious', 'admin'],
      ['release', null, 'admin'],
    ],
  );
  t.is(rows[1]!.prev_hash, rows[0]!.hash);
  await t.throwsAsync(knex('worker_audit').where({ node_id: 'cloud-q-03' }).update({ reason: 'nothing' }), { message: /append-only/ });
  await t.throwsAsync(knex('worker_audit').del(), { message: /append-only/ });

  // Quarantining twice writes nothing more; releasing a free node neither.
  t.is((await call(base, '/v1/workers/cloud-q-01/quarantine', { json: { reason: 'again' } })).status, 200);
  t.is((await call(base, '/v1/workers/cloud-q-02/release', { method: 'POST' })).status, 200);
  t.is(Number((await knex('worker_audit').count({ n: '*' }))[0]!.n), 3);
});

test.serial('quarantine needs a known node and a reason, and an admin', async (t) => {
  const unknown = await call(base, '/v1/workers/cloud-nobody/quarantine', { json: { reason: 'x' } });
  t.is(unknown.status, 404);
  t.is(codeOf(unknown.body), 'worker_not_found');
  t.is((await call(base, '/v1/workers/cloud-q-02/quarantine', { json: {} })).status, 400);
  t.is((await call(base, '/v1/workers/cloud-q-02/quarantine', { json: { reason: '  ' } })).status, 400);
  const worker = await registerWorker(base, psk, { node_id: 'cloud-q-04' });
  t.is((await call(base, '/v1/workers/cloud-q-04/quarantine', { token: worker.token, json: { reason: 'x' } })).status, 401);
});
