import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call } from '../helpers/http.js';
import { createPsk, poll, registerWorker, submitJob } from '../helpers/workers.js';

// The Worker API on the embedded database (PGlite, no configuration): the same migrations,
// the same SQL (FOR UPDATE SKIP LOCKED, group-committed writes), woken long polls in-process.
let gw: BootedGateway;
test.before(async () => {
  gw = await bootGateway({ database: 'embedded', roles: ['control'] });
});
test.after.always(() => gw?.stop());

test.serial('embedded: register, submit, long-poll, lease, result, replay and fencing all work', async (t) => {
  t.is(gw.gateway.db.kind, 'embedded');
  const base = gw.url();
  const psk = (await createPsk(base)).secret;
  const w = await registerWorker(base, psk, {
    node_id: 'local-emb-01',
    labels: ['local'],
    region: 'onprem',
    inference_mode: 'ollama_local',
    supported_providers: [],
    provider: undefined,
  });
  const other = await registerWorker(base, psk, {
    node_id: 'local-emb-02',
    labels: ['local'],
    region: 'onprem',
    inference_mode: 'ollama_local',
    supported_providers: [],
    provider: undefined,
  });

  const waiting = poll(base, w, { wait_ms: 5000 });
  await new Promise((r) => setTimeout(r, 200));
  const submitted = await submitJob(base, { payload: { kind: 'echo', input: 'emb' } }, 'emb-key-1');
  t.is(submitted.status, 201);
  const replay = await submitJob(base, { payload: { kind: 'echo', input: 'emb' } }, 'emb-key-1');
  t.deepEqual(replay.body, submitted.body);
  const id = String(submitted.body.id);
  const leased = (await waiting).body.jobs.find((j) => j.job_id === id)!;
  t.truthy(leased, 'the waiting poll was woken with the job');
  t.deepEqual((await poll(base, other)).body.jobs, []);

  const ref = { job_id: id, lease_id: leased.lease_id };
  t.is((await call(base, '/result', { token: other.token, json: { ...ref, status: 'succeeded', result: 1 } })).status, 403);
  const done = await call(base, '/result', { token: w.token, json: { ...ref, status: 'succeeded', result: { ok: true } } });
  t.is(done.status, 200);
  t.deepEqual(
    (await call(base, '/result', { token: w.token, json: { ...ref, status: 'succeeded', result: { ok: true } } })).body,
    done.body,
  );
  const view = await call<{ state: string; result: unknown; history: { decision_id: string }[] }>(base, `/v1/jobs/${id}`);
  t.is(view.body.state, 'succeeded');
  t.deepEqual(view.body.result, { ok: true });
  t.is((await call(base, `/v1/decisions/${view.body.history[0]!.decision_id}`)).status, 200, 'the dispatch decision is on record');
});
