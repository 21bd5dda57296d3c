import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call } from '../helpers/http.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

let gw: BootedGateway;
let base: string;
let psk: string;

test.before(async () => {
  gw = await bootGateway({ roles: ['control'] });
  base = gw.url();
  psk = (await createPsk(base)).secret;
});
test.after.always(() => gw?.stop());

type Detail = { state: string; decisions: { node_id: string; allow: boolean; reasons: string[]; score: number; decision_id: string }[] };
const detail = async (id: string) => (await call<Detail>(base, `/v1/jobs/${id}`)).body;
const reasonsFor = async (id: string, node: string) => (await detail(id)).decisions.find((d) => d.node_id === node)?.reasons;
const setting = (key: string, value: unknown) => call(base, `/v1/settings/${key}`, { method: 'PUT', json: { value } });
const pref = (scope: string, id: string, key: string, value: unknown) =>
  call(base, `/v1/preferences/${scope}/${id}/${key}`, { method: 'PUT', json: { value } });
/** Jobs of one test carry that test's model, and only that test's workers support it. */
const submit = async (model: string, extra: Record<string, unknown> = {}) => {
  const res = await submitJob(base, { ...extra, requirements: { models: [model], ...(extra.requirements as object) } });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return String(res.body.id);
};
const cloudWorker = (nodeId: string, model: string): Promise<TestWorker> =>
  registerWorker(base, psk, { node_id: nodeId, supported_models: [model], max_concurrency: 4 });
const localWorker = (nodeId: string, model: string): Promise<TestWorker> =>
  registerWorker(base, psk, {
    node_id: nodeId,
    labels: ['local'],
    region: 'onprem',
    inference_mode: 'ollama_local',
    supported_providers: [],
    supported_models: [model],
    provider: undefined,
    max_concurrency: 4,
  });
const leasedIds = async (w: TestWorker) => (await poll(base, w, { max_jobs: 4 })).body.jobs.map((j) => j.job_id);

test.serial('cloud selection needs the user preference: denied by default, allowed once the user allows it, task level wins', async (t) => {
  const cloud = await cloudWorker('cloud-pref-01', 'm-pref');
  const id = await submit('m-pref', { user_id: 'alice' });
  t.deepEqual(await leasedIds(cloud), []);
  t.deepEqual(await reasonsFor(id, 'cloud-pref-01'), ['cloud_not_allowed_by_preferences']);

  t.is((await pref('user', 'alice', 'cloud_allowed', true)).status, 200);
  t.deepEqual(await leasedIds(cloud), [id], 'allowed on the very next poll');

  // system < group < user < project < task: the job's own preference overrides the user's.
  const vetoed = await submit('m-pref', { user_id: 'alice', preferences: { cloud_allowed: false } });
  t.deepEqual(await leasedIds(cloud), []);
  t.deepEqual(await reasonsFor(vetoed, 'cloud-pref-01'), ['cloud_not_allowed_by_preferences']);
  await pref('project', 'p-secret', 'cloud_allowed', false);
  const project = await submit('m-pref', { user_id: 'alice', project_id: 'p-secret' });
  t.deepEqual(await leasedIds(cloud), [], 'the project level overrides the user level');
  await pref('group', 'g-1', 'cloud_allowed', true);
  const grouped = await submit('m-pref', { user_id: 'bob', group_id: 'g-1' });
  t.deepEqual(await leasedIds(cloud), [grouped], 'the group level allows bob');
  t.deepEqual(await reasonsFor(project, 'cloud-pref-01'), ['cloud_not_allowed_by_preferences']);

  const bad = await pref('user', 'alice', 'cloud_allowed', 'yes');
  t.is(bad.status, 422);
  t.is((await pref('galaxy', 'x', 'cloud_allowed', true)).status, 404);
  t.is((await pref('user', 'alice', 'colour', 'red')).status, 404);
  t.is((await call<{ value: boolean }>(base, '/v1/preferences/user/alice/cloud_allowed')).body.value, true);
});

test.serial('the kill switch stops cloud dispatch on the next poll; jobs wait with cloud_routing_disabled', async (t) => {
  await pref('system', 'default', 'cloud_allowed', true);
  const cloud = await cloudWorker('cloud-kill-01', 'm-kill');
  const local = await localWorker('local-kill-01', 'm-kill');
  t.is((await setting('cloud_routing.enabled', false)).status, 200);

  const cloudOnly = await submit('m-kill', { requirements: { models: ['m-kill'], providers: ['openai'] } });
  const anywhere = await submit('m-kill');
  t.deepEqual(await leasedIds(cloud), [], 'no cloud dispatch at all');
  t.deepEqual(await reasonsFor(cloudOnly, 'cloud-kill-01'), ['cloud_routing_disabled']);
  t.deepEqual(await reasonsFor(anywhere, 'cloud-kill-01'), ['cloud_routing_disabled']);
  t.deepEqual(await leasedIds(local), [anywhere], 'local work goes on');
  t.deepEqual(await reasonsFor(cloudOnly, 'local-kill-01'), ['provider_not_supported']);
  const waiting = await detail(cloudOnly);
  t.is(waiting.state, 'queued');

  t.is((await setting('cloud_routing.enabled', true)).status, 200);
  t.deepEqual(await leasedIds(cloud), [cloudOnly], 'back on the very next poll');
});

test.serial('regional constraints, provider override, cost limits and budgets are enforced with reasons', async (t) => {
  await pref('system', 'default', 'cloud_allowed', true);
  const east = await cloudWorker('cloud-rules-01', 'm-rules');
  const eu = await submit('m-rules', { requirements: { models: ['m-rules'], regions: ['eu-west-1'] } });
  const anthropic = await submit('m-rules', { preferences: { provider: 'anthropic' } });
  const costly = await submit('m-rules', { estimated_cost_usd: 9 });
  const broke = await submit('m-rules', { estimated_cost_usd: 0.5, budget_usd: 0.1 });
  const fine = await submit('m-rules', { estimated_cost_usd: 0.5, budget_usd: 1 });
  t.deepEqual(await leasedIds(east), [fine]);
  t.deepEqual(await reasonsFor(eu, 'cloud-rules-01'), ['region_not_allowed']);
  t.deepEqual(await reasonsFor(anthropic, 'cloud-rules-01'), ['provider_override_unmet']);
  t.deepEqual(await reasonsFor(costly, 'cloud-rules-01'), ['cost_limit_exceeded']);
  t.deepEqual(await reasonsFor(broke, 'cloud-rules-01'), ['budget_exceeded']);
});

test.serial('data locality: other nodes wait a bounded time for the preferred node, then may take the job', async (t) => {
  const preferred = await localWorker('local-home-01', 'm-loc');
  const other = await localWorker('local-away-01', 'm-loc');
  const id = await submit('m-loc', { preferred_node_id: 'local-home-01', preferences: { locality_max_wait_ms: 600 } });
  t.deepEqual(await leasedIds(other), []);
  t.deepEqual(await reasonsFor(id, 'local-away-01'), ['locality_wait']);
  await new Promise((r) => setTimeout(r, 700));
  t.deepEqual(await leasedIds(other), [id], 'after the wait, another node takes it');

  const home = await submit('m-loc', { preferred_node_id: 'local-home-01', preferences: { locality_max_wait_ms: 60_000 } });
  const plain = await submit('m-loc');
  const taken = (await poll(base, preferred, { max_jobs: 1 })).body.jobs.map((j) => j.job_id);
  t.deepEqual(taken, [home], 'the preferred node scores its own job above the others');
  const decisions = (await detail(plain)).decisions;
  t.true(decisions.some((d) => d.node_id === 'local-home-01' && d.allow));
  void plain;
});

test.serial('every dispatch decision is recorded in the decision log with its input', async (t) => {
  const w = await localWorker('local-log-01', 'm-log');
  const id = await submit('m-log');
  t.deepEqual(await leasedIds(w), [id]);
  const view = (await call<{ history: { decision_id: string; node_id: string }[]; decisions: unknown[] }>(base, `/v1/jobs/${id}`)).body;
  t.deepEqual(view.decisions, [], 'a leased job is not waiting: its decision is on its attempt');
  const logged = await call<{
    path: string;
    input: { resource: { job_id: string }; subject: { node_id: string } };
    result: { allow: boolean; score: number };
  }>(base, `/v1/decisions/${view.history[0]!.decision_id}`);
  t.is(logged.status, 200);
  t.is(logged.body.path, 'cynode/dispatch/decision');
  t.is(logged.body.input.resource.job_id, id);
  t.is(logged.body.input.subject.node_id, 'local-log-01');
  t.true(logged.body.result.allow);
  t.true(logged.body.result.score > 0);
});
