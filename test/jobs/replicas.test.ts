import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call } from '../helpers/http.js';
import { createPsk, poll, registerWorker, submitJob } from '../helpers/workers.js';

// Two replicas on one PostgreSQL: a job submitted to one wakes a long poll waiting on the
// other through NOTIFY (the polling fallback is set far beyond the test's patience).
let a: BootedGateway;
let b: BootedGateway;
test.before(async () => {
  const env = { CYNODE_JOB_WAKE_FALLBACK_MS: '20000' };
  a = await bootGateway({ env, roles: ['control'] });
  b = await bootGateway({ env, roles: ['control'], database: a.db });
});
test.after.always(async () => {
  await b?.stop();
  await a?.stop(); // last: it drops the database both share
});

test.serial('a long poll on one replica is woken by a job submitted to another', async (t) => {
  const psk = (await createPsk(a.url())).secret;
  const w = await registerWorker(b.url(), psk, {
    node_id: 'local-rep-01',
    labels: ['local'],
    region: 'onprem',
    inference_mode: 'ollama_local',
    supported_providers: [],
    provider: undefined,
  });
  // Let the listener connect, then wait on replica b.
  await new Promise((r) => setTimeout(r, 300));
  const started = Date.now();
  const waiting = poll(b.url(), w, { wait_ms: 15_000 });
  await new Promise((r) => setTimeout(r, 300));
  const id = String((await submitJob(a.url(), {})).body.id);
  const res = await waiting;
  const ms = Date.now() - started - 300;
  t.true(res.body.jobs.some((j) => j.job_id === id));
  t.true(ms < 3000, `woken ${ms} ms after the submission`);
  t.log(`job submitted on replica a reached the poll on replica b in ${ms} ms`);
  const view = await call<{ state: string }>(a.url(), `/v1/jobs/${id}`);
  t.is(view.body.state, 'leased');
});

test.serial('the kill switch set on one replica stops cloud dispatch on the other at the next poll', async (t) => {
  const psk = (await createPsk(a.url())).secret;
  await call(a.url(), '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  const cloud = await registerWorker(b.url(), psk, { node_id: 'cloud-rep-01', supported_models: ['m-rep'] });
  t.is((await call(a.url(), '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: false } })).status, 200);
  // NOTIFY carries the change to b; give it a moment, as a poll a few ms later would.
  await new Promise((r) => setTimeout(r, 200));
  const id = String((await submitJob(a.url(), { requirements: { models: ['m-rep'] } })).body.id);
  t.deepEqual((await poll(b.url(), cloud)).body.jobs, []);
  const detail = await call<{ decisions: { reasons: string[] }[] }>(a.url(), `/v1/jobs/${id}`);
  t.deepEqual(detail.body.decisions[0]?.reasons, ['cloud_routing_disabled']);
  await call(a.url(), '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: true } });
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(
    (await poll(b.url(), cloud)).body.jobs.map((j) => j.job_id),
    [id],
  );
});
