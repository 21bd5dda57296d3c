import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { CLOUD_DISPATCH_INPUT, SEED_WORKER } from '../helpers/fixtures.js';
import { call } from '../helpers/http.js';
import { createPsk, poll, registerWorker, submitJob } from '../helpers/workers.js';

// The read APIs the console is built on: decisions listed and filtered, their rate, the audit
// rows a decision led to, and spend. Decisions are made through POST /v1/data so each input is known.
let gw: BootedGateway;
let base: string;
const ids: Record<string, string> = {};

type Summary = {
  decision_id: string;
  path: string;
  allow: boolean;
  reasons: string[];
  subject: string;
  task_id: string | null;
  masked: boolean;
  seq: number;
};
const decide = async (path: string, input: unknown) => String((await call(base, `/v1/data/${path}`, { json: { input } })).body.decision_id);
const list = async (q: string) => {
  const res = await call<{ decisions: Summary[] }>(base, `/v1/decisions${q}`);
  if (res.status !== 200) throw new Error(`${q}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.decisions;
};

test.before(async () => {
  gw = await bootGateway({ roles: ['control'], env: { CYNODE_DECISION_LOG_MASK_PATHS: '/context/secret' } });
  base = gw.url();
  const dispatch = 'cynode/dispatch/decision';
  ids.allowed = await decide(dispatch, CLOUD_DISPATCH_INPUT);
  ids.denied = await decide(dispatch, {
    ...CLOUD_DISPATCH_INPUT,
    resource: {
      ...CLOUD_DISPATCH_INPUT.resource,
      task_id: 'task-eu',
      requirements: { ...CLOUD_DISPATCH_INPUT.resource.requirements, regions: ['eu-west-1'] },
    },
  });
  ids.masked = await decide('cynode/register/decision', {
    action: 'register',
    subject: { ...SEED_WORKER, node_id: 'masked-01' },
    resource: {},
    context: { secret: 'hunter2' },
  });
});
test.after.always(() => gw?.stop());

test.serial('decisions are listed newest first and filtered by entrypoint, outcome, reason, subject, task and time', async (t) => {
  const all = await list('');
  t.deepEqual(
    all.slice(0, 3).map((d) => d.decision_id),
    [ids.masked, ids.denied, ids.allowed],
  );
  t.deepEqual(
    (await list('?entrypoint=cynode/dispatch/decision')).map((d) => d.decision_id),
    [ids.denied, ids.allowed],
  );
  t.deepEqual(
    (await list('?allow=false')).map((d) => d.decision_id),
    [ids.denied],
  );
  const [denied] = await list('?reason=region_not_allowed');
  t.is(denied?.decision_id, ids.denied);
  t.deepEqual(denied?.reasons, ['region_not_allowed']);
  t.is(denied?.task_id, 'task-eu');
  t.deepEqual(
    (await list('?task=task-eu')).map((d) => d.decision_id),
    [ids.denied],
  );
  t.deepEqual(
    (await list('?subject=masked-01')).map((d) => d.decision_id),
    [ids.masked],
  );
  t.deepEqual(
    (await list('?since=1h&limit=1')).map((d) => d.decision_id),
    [ids.masked],
  );
  t.deepEqual(await list(`?until=${encodeURIComponent(new Date(Date.now() - 3_600_000).toISOString())}`), []);
  t.deepEqual(
    (await list(`?before=${all[0]!.seq}&limit=1`)).map((d) => d.decision_id),
    [ids.denied],
    'the next page',
  );
});

test.serial('a decision whose input had masked fields is flagged in the list, and its input is shown masked', async (t) => {
  const [masked] = await list('?subject=masked-01');
  t.true(masked?.masked);
  t.false((await list('?allow=false'))[0]?.masked);
  const event = (await call<{ input: { context: { secret: unknown } }; erased: string[] }>(base, `/v1/decisions/${ids.masked}`)).body;
  t.deepEqual(event.erased, ['/context/secret']);
  t.not(event.input.context.secret, 'hunter2');
});

test.serial('malformed filters are refused with bad_request', async (t) => {
  for (const q of [
    '?allow=maybe',
    '?limit=0',
    '?limit=1001',
    '?since=yesterday',
    '?before=x',
    '?task=' + 'x'.repeat(300),
    '?reason=' + 'r'.repeat(300),
  ]) {
    const res = await call(base, `/v1/decisions${q}`);
    t.is(res.status, 400, q.slice(0, 40));
  }
  t.is((await call(base, '/v1/decisions/stats?since=30d')).status, 400);
});

test.serial('stats count allowed and denied decisions per minute', async (t) => {
  const stats = (
    await call<{ total: { allow: number; deny: number }; minutes: { allow: number; deny: number }[] }>(
      base,
      '/v1/decisions/stats?since=10m',
    )
  ).body;
  t.true(stats.total.allow >= 2, 'the allowed dispatch and the registration');
  t.true(stats.total.deny >= 1);
  t.is(
    stats.minutes.reduce((n, m) => n + m.allow + m.deny, 0),
    stats.total.allow + stats.total.deny,
  );
});

test.serial('a dispatch decision leads to its dispatch answer and lease: GET /v1/decisions/{id}/audit', async (t) => {
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  const worker = await registerWorker(base, (await createPsk(base)).secret, { node_id: 'trail-01', supported_models: ['m-trail'] });
  const job = String((await submitJob(base, { requirements: { models: ['m-trail'] } })).body.id);
  t.is((await poll(base, worker, { max_jobs: 1 })).body.jobs[0]?.job_id, job);
  const detail = (await call<{ history: { decision_id: string }[] }>(base, `/v1/jobs/${job}`)).body;
  const trail = (
    await call<{ job_attempts: { job_id: string }[]; job_decisions: { job_id: string }[]; api_audit: unknown[] }>(
      base,
      `/v1/decisions/${detail.history[0]!.decision_id}/audit`,
    )
  ).body;
  t.is(trail.job_attempts[0]?.job_id, job);
  t.true(Array.isArray(trail.job_decisions));
  t.deepEqual(trail.api_audit, []);
  t.is((await call(base, '/v1/decisions/not-a-uuid/audit')).status, 404);
});

test.serial('spend reports today by default, with hours, top tasks and users, and reservations held', async (t) => {
  const spend = (await call<Record<string, any>>(base, '/v1/spend')).body;
  t.is(spend.since, new Date().toISOString().slice(0, 10) + 'T00:00:00.000Z');
  t.like(spend, { total_usd: 0, calls: 0, hours: [], top_tasks: [], top_users: [], reservations: { held: 0, held_usd: 0 } });
  t.is((await call(base, '/v1/spend?since=2000-01-01T00:00:00Z')).status, 400);
  t.is((await call(base, '/v1/spend?top=0')).status, 400);
});

test.serial('every chain verifies: decision log, api.call audit, tool audit, worker audit', async (t) => {
  const { chains } = (await call<{ chains: Record<string, { rows: number; intact: boolean }> }>(base, '/v1/audit/chains')).body;
  t.deepEqual(Object.keys(chains).sort(), ['api_audit', 'decision_log', 'tool_audit', 'worker_audit']);
  t.true(Object.values(chains).every((c) => c.intact));
  t.true(chains.decision_log!.rows >= 3);
});

test.serial('the tool audit is listed newest first and filtered; malformed filters are refused', async (t) => {
  t.deepEqual((await call(base, '/v1/tool-audit?task_id=task-1&tool=artifacts.read&outcome=denied')).body, { records: [] });
  for (const q of ['?outcome=maybe', '?limit=0', '?task_id=' + 'x'.repeat(300)])
    t.is((await call(base, `/v1/tool-audit${q}`)).status, 400, q.slice(0, 30));
});

test.serial('each replica records the bundle it activated and says which it runs', async (t) => {
  const { activations } = (await call<{ activations: { revision: string; digest: string; replica: string }[] }>(base, '/v1/policy/history'))
    .body;
  const active = gw.gateway.policy.status().active!;
  t.like(activations[0], { revision: active.revision, digest: active.digest });
  const { replicas } = (await call<{ replicas: { replica: string; revision: string; live: boolean }[] }>(base, '/v1/policy/replicas')).body;
  t.is(replicas.length, 1);
  t.like(replicas[0], { replica: activations[0]!.replica, revision: active.revision, live: true });
  t.is((await call(base, '/v1/policy/history?limit=0')).status, 400);
});
