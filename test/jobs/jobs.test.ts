import test from 'ava';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call, eventually } from '../helpers/http.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

let gw: BootedGateway;
let base: string;
let psk: string;

// Short leases and backoff so lapses and retries happen within a test.
test.before(async () => {
  gw = await bootGateway({
    env: {
      CYNODE_JOB_LEASE_TTL_MS: '1500',
      CYNODE_WORKER_HEARTBEAT_INTERVAL_MS: '200',
      CYNODE_JOB_REAPER_INTERVAL_MS: '100',
      CYNODE_JOB_RETRY_BASE_MS: '0',
      CYNODE_JOB_RETRY_MAX_MS: '0',
    },
    roles: ['control'],
  });
  base = gw.url();
  psk = (await createPsk(base)).secret;
});
test.after.always(() => gw?.stop());

const code = (body: unknown) => (body as { error: { code: string } }).error.code;
// Local workers need no cloud permission: most queue tests use them. Each test's workers
// support one model named after the test, and its jobs require it, so tests never mix.
let n = 0;
const localWorker = (over: Record<string, unknown> = {}): Promise<TestWorker> =>
  registerWorker(base, psk, {
    node_id: `local-${n++}`,
    labels: ['local'],
    region: 'onprem',
    inference_mode: 'ollama_local',
    supported_providers: [],
    supported_models: ['none'],
    provider: undefined,
    max_concurrency: 4,
    ...over,
  });
const job = (id: string) => call<Record<string, any>>(base, `/v1/jobs/${id}`);
/** Submits with a task id of its own, so tests never take each other's jobs. */
const submit = async (tag: string, extra: Record<string, unknown> = {}) => {
  const res = await submitJob(base, { task_id: tag, requirements: { models: [tag.split('-')[0]!] }, ...extra });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return String(res.body.id);
};

test.serial('submission is idempotent: replay, 422 for a changed body, 409 while in flight, 400 without a key', async (t) => {
  const body = { task_id: 't-idem', user_id: 'u1', payload: { kind: 'echo' }, requirements: { models: ['idem'] } };
  const first = await call(base, '/v1/jobs', { json: body, headers: { 'idempotency-key': 'idem-1' } });
  t.is(first.status, 201);
  const again = await call(base, '/v1/jobs', { json: body, headers: { 'idempotency-key': 'idem-1' } });
  t.is(again.status, 201);
  t.deepEqual(again.body, first.body);
  t.is(again.headers.get('idempotent-replayed'), 'true');
  t.is(
    await gw.gateway.db
      .knex('jobs')
      .where({ task_id: 't-idem' })
      .count({ n: '*' })
      .first()
      .then((r: any) => Number(r.n)),
    1,
  );

  const changed = await call(base, '/v1/jobs', { json: { ...body, priority: 5 }, headers: { 'idempotency-key': 'idem-1' } });
  t.is(changed.status, 422);
  t.is(code(changed.body), 'idempotency_key_reused');

  const missing = await call(base, '/v1/jobs', { json: body });
  t.is(missing.status, 400);
  t.is(code(missing.body), 'idempotency_key_required');

  // A request still working on its key (another replica, say): the duplicate is told so.
  const { createHash } = await import('node:crypto');
  const { canonicalJson } = await import('../../src/lib/canonical-json.js');
  const { parseJobSpec } = await import('../../src/jobs/index.js');
  const spec = parseJobSpec(body, { maxAttempts: 3, timeoutMs: 600000 });
  await gw.gateway.db.knex('idempotency_keys').insert({
    scope: 'jobs:admin',
    key: 'idem-busy',
    request_sha256: createHash('sha256').update(canonicalJson(spec)).digest('hex'),
    state: 'in_flight',
    locked_until: new Date(Date.now() + 30_000),
    created_at: new Date(),
  });
  const busy = await call(base, '/v1/jobs', { json: body, headers: { 'idempotency-key': 'idem-busy' } });
  t.is(busy.status, 409);
  t.is(code(busy.body), 'idempotency_in_flight');
});

test.serial('a bad job is refused field by field', async (t) => {
  const res = await call(base, '/v1/jobs', {
    json: {
      user_id: 'u',
      payload: 'x',
      priority: 1.5,
      max_attempts: 0,
      requirements: { labels: 'gpu', colour: [] },
      preferences: { cloud_allowed: 'yes' },
      extra: 1,
    },
    headers: { 'idempotency-key': 'bad-1' },
  });
  t.is(res.status, 422);
  t.is(code(res.body), 'job_invalid');
  const fields = (res.body.error as any).details.errors.map((e: { field: string }) => e.field).sort();
  t.deepEqual(fields, [
    'extra',
    'max_attempts',
    'payload',
    'preferences.cloud_allowed',
    'priority',
    'requirements.colour',
    'requirements.labels',
    'task_id',
  ]);
  t.is((await job('not-a-uuid')).status, 404);
});

test.serial('a job is leased once, its result fenced: replay, conflict, other workers refused', async (t) => {
  const a = await localWorker({ supported_models: ['fence'] });
  const b = await localWorker({ supported_models: ['fence'] });
  const id = await submit('fence-1');
  const polled = await poll(base, a, { max_jobs: 4 });
  t.is(polled.status, 200);
  const leased = polled.body.jobs.find((j) => j.job_id === id)!;
  t.truthy(leased, 'worker a leased it');
  t.false(
    (await poll(base, b)).body.jobs.some((j) => j.job_id === id),
    'never leased twice',
  );

  const ref = { job_id: id, lease_id: leased.lease_id };
  const foreignStatus = await call(base, '/status', { token: b.token, json: { jobs: [ref] } });
  t.is(foreignStatus.status, 403);
  t.is(code(foreignStatus.body), 'job_not_owned');
  const foreignResult = await call(base, '/result', { token: b.token, json: { ...ref, status: 'succeeded', result: { x: 1 } } });
  t.is(foreignResult.status, 403);

  const done = await call(base, '/result', { token: a.token, json: { ...ref, status: 'succeeded', result: { answer: 42 } } });
  t.is(done.status, 200);
  t.is(done.body.state, 'succeeded');
  const again = await call(base, '/result', { token: a.token, json: { ...ref, status: 'succeeded', result: { answer: 42 } } });
  t.deepEqual(again.body, done.body, 'the same result again gets the same answer');
  const different = await call(base, '/result', { token: a.token, json: { ...ref, status: 'succeeded', result: { answer: 41 } } });
  t.is(different.status, 409);
  t.is(code(different.body), 'result_conflict');
  const view = await job(id);
  t.is(view.body.state, 'succeeded');
  t.deepEqual(view.body.result, { answer: 42 });
  t.is(view.body.history.length, 1);
  t.is(view.body.history[0].outcome, 'succeeded');
});

test.serial('concurrent polls never lease a job twice (FOR UPDATE SKIP LOCKED)', async (t) => {
  const workers = await Promise.all(Array.from({ length: 6 }, () => localWorker({ supported_models: ['race'], max_concurrency: 8 })));
  const ids = new Set<string>();
  for (let i = 0; i < 30; i++) ids.add(await submit(`race-${i}`));
  const leases: string[] = [];
  await Promise.all(
    workers.map(async (w) => {
      // A poll may come back empty while the rows it wanted are locked by another poll.
      for (let round = 0; round < 20 && new Set(leases).size < 30; round++) {
        leases.push(...(await poll(base, w, { max_jobs: 8 })).body.jobs.map((j) => j.job_id).filter((x) => ids.has(x)));
      }
    }),
  );
  t.is(new Set(leases).size, 30, 'every job leased');
  t.is(leases.length, 30, 'no job leased twice');
});

test.serial('a worker killed mid-job: the lease lapses, another worker completes it once, the late result is refused', async (t) => {
  const dead = await localWorker({ supported_models: ['crash'] });
  const alive = await localWorker({ supported_models: ['crash'] });
  const id = await submit('crash-1');
  const first = (await poll(base, dead)).body.jobs.find((j) => j.job_id === id)!;
  t.truthy(first);
  // `dead` never heartbeats again. Its lease lapses (1.5 s) and the reaper requeues the job.
  await eventually(async () => (await job(id)).body.state === 'queued', 5000);
  const second = (await poll(base, alive)).body.jobs.find((j) => j.job_id === id)!;
  t.truthy(second);
  t.not(second.lease_id, first.lease_id);
  const late = await call(base, '/result', {
    token: dead.token,
    json: { job_id: id, lease_id: first.lease_id, status: 'succeeded', result: 'late' },
  });
  t.is(late.status, 409);
  t.is(code(late.body), 'lease_superseded');
  const ok = await call(base, '/result', {
    token: alive.token,
    json: { job_id: id, lease_id: second.lease_id, status: 'succeeded', result: 'on time' },
  });
  t.is(ok.status, 200);
  const view = await job(id);
  t.is(view.body.state, 'succeeded');
  t.is(view.body.result, 'on time');
  t.deepEqual(
    view.body.history.map((h: { outcome: string }) => h.outcome),
    ['expired', 'succeeded'],
  );
  const status = await call<any>(base, '/status', { token: dead.token, json: { jobs: [{ job_id: id, lease_id: first.lease_id }] } });
  t.deepEqual(status.body.lost, [{ job_id: id, lease_id: first.lease_id, reason: 'finished' }]);
});

test.serial('heartbeats extend leases; a job past its timeout is not extended', async (t) => {
  const w = await localWorker({ supported_models: ['beat'] });
  const id = await submit('beat-1', { timeout_ms: 2500 });
  const leased = (await poll(base, w)).body.jobs.find((j) => j.job_id === id)!;
  const ref = { job_id: id, lease_id: leased.lease_id };
  // Four heartbeats 500 ms apart outlive the 1.5 s lease: only renewal keeps it.
  let expires = Date.parse(leased.lease_expires_at);
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const s = await call<any>(base, '/status', {
      token: w.token,
      json: { health: { status: 'ok' }, load: { active_jobs: 1 }, jobs: [ref] },
    });
    t.is(s.status, 200);
    t.is(s.body.leases.length, 1, 'still leased thanks to heartbeats');
    const next = Date.parse(s.body.leases[0].lease_expires_at);
    t.true(next >= expires, 'the lease moves forward (up to the attempt deadline)');
    expires = next;
  }
  // The attempt deadline (2.5 s) caps the lease: it lapses as timed out even with heartbeats.
  await eventually(async () => {
    await call(base, '/status', { token: w.token, json: { jobs: [ref] } });
    return (await job(id)).body.history[0]?.outcome === 'timed_out';
  }, 5000);
});

test.serial('retryable failures go back with backoff, then dead-letter with their history; others fail at once', async (t) => {
  const w = await localWorker({ supported_models: ['retry'] });
  const id = await submit('retry-1', { max_attempts: 2 });
  for (let attempt = 1; attempt <= 2; attempt++) {
    let leased: { job_id: string; lease_id: string } | undefined;
    await eventually(async () => !!(leased = (await poll(base, w)).body.jobs.find((j) => j.job_id === id)), 5000);
    const res = await call(base, '/result', {
      token: w.token,
      json: {
        job_id: id,
        lease_id: leased!.lease_id,
        status: 'failed',
        error: { code: 'provider_timeout', message: 'slow', retryable: true },
      },
    });
    t.is(res.body.state, attempt === 1 ? 'queued' : 'dead_lettered');
  }
  const view = await job(id);
  t.is(view.body.state, 'dead_lettered');
  t.is(view.body.history.length, 2);
  t.true(view.body.history.every((h: { error: { code: string } }) => h.error.code === 'provider_timeout'));
  const dead = await call<{ jobs: { id: string }[] }>(base, '/v1/jobs?state=dead_lettered');
  t.true(dead.body.jobs.some((j) => j.id === id));

  const permanent = await submit('retry-2', { max_attempts: 5 });
  const leased = (await poll(base, w)).body.jobs.find((j) => j.job_id === permanent)!;
  const res = await call(base, '/result', {
    token: w.token,
    json: { job_id: permanent, lease_id: leased.lease_id, status: 'failed', error: { code: 'bad_input', message: 'no', retryable: false } },
  });
  t.is(res.body.state, 'failed');
});

test.serial('cancel: a queued job stops at once; a leased one is reported to its worker and its result refused', async (t) => {
  const w = await localWorker({ supported_models: ['cancel'] });
  const queued = await submit('cancel-1');
  t.is((await call(base, `/v1/jobs/${queued}/cancel`, { method: 'POST' })).body.state, 'cancelled');
  t.false((await poll(base, w)).body.jobs.some((j) => j.job_id === queued));

  const running = await submit('cancel-2');
  const leased = (await poll(base, w)).body.jobs.find((j) => j.job_id === running)!;
  t.is((await call(base, `/v1/jobs/${running}/cancel`, { method: 'POST' })).status, 200);
  const ref = { job_id: running, lease_id: leased.lease_id };
  const status = await call<any>(base, '/status', { token: w.token, json: { jobs: [ref] } });
  t.deepEqual(status.body.cancelled, [ref]);
  const late = await call(base, '/result', { token: w.token, json: { ...ref, status: 'succeeded', result: 1 } });
  t.is(late.status, 409);
  t.is(code(late.body), 'job_finished');
  const done = await submit('cancel-3');
  const l3 = (await poll(base, w)).body.jobs.find((j) => j.job_id === done)!;
  await call(base, '/result', { token: w.token, json: { job_id: done, lease_id: l3.lease_id, status: 'succeeded', result: 1 } });
  const refused = await call(base, `/v1/jobs/${done}/cancel`, { method: 'POST' });
  t.is(refused.status, 409);
  t.is(code(refused.body), 'job_finished');
});

test.serial('a poll leases no more than the free concurrency', async (t) => {
  const w = await localWorker({ supported_models: ['cap'], max_concurrency: 2 });
  for (let i = 0; i < 4; i++) await submit(`cap-${i}`);
  t.is((await poll(base, w, { max_jobs: 10 })).body.jobs.length, 2);
  t.is((await poll(base, w, { max_jobs: 10 })).body.jobs.length, 0, 'full: nothing more until a slot frees');
});

test.serial('a long poll is woken by a new job well before its wait ends', async (t) => {
  const w = await localWorker({ supported_models: ['wake'] });
  const started = Date.now();
  const pending = poll(base, w, { wait_ms: 10_000 });
  await new Promise((r) => setTimeout(r, 300));
  const id = await submit('wake-1');
  const res = await pending;
  const ms = Date.now() - started;
  t.true(res.body.jobs.some((j) => j.job_id === id));
  t.true(ms < 3000, `returned after ${ms} ms`);
  t.log(`job delivered ${ms - 300} ms after submission`);
  const empty = Date.now();
  t.deepEqual((await poll(base, w, { wait_ms: 400 })).body.jobs, []);
  t.true(Date.now() - empty >= 380, 'an empty long poll waits its wait_ms');
});

test.serial('a long poll whose worker went away leases nothing: the job goes to a worker still there', async (t) => {
  const gone = await localWorker({ supported_models: ['gone'] });
  const here = await localWorker({ supported_models: ['gone'] });
  const hangUp = new AbortController();
  const pending = fetch(`${base}/jobs/poll`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gone.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ wait_ms: 10_000 }),
    signal: hangUp.signal,
  }).catch(() => null);
  await new Promise((r) => setTimeout(r, 300));
  hangUp.abort();
  await pending;
  await new Promise((r) => setTimeout(r, 100));
  const id = await submit('gone-1');
  t.true(
    (await poll(base, here, { wait_ms: 0 })).body.jobs.some((j) => j.job_id === id),
    'the job was still queued',
  );
  t.is((await job(id)).body.state, 'leased');
});

test.serial('bad poll, status and result bodies get 400 with stable codes', async (t) => {
  const w = await localWorker();
  for (const [path, json] of [
    ['/jobs/poll', { max_jobs: 0 }],
    ['/jobs/poll', { wait_ms: 60_000 }],
    ['/jobs/poll', { colour: 1 }],
    ['/status', { jobs: 'all' }],
    ['/status', { jobs: [{ job_id: 'x', lease_id: 'y' }] }],
    ['/status', { load: 5 }],
    ['/result', { job_id: 'x' }],
    ['/result', { job_id: '00000000-0000-4000-8000-000000000000', lease_id: '00000000-0000-4000-8000-000000000000', status: 'done' }],
    ['/result', { job_id: '00000000-0000-4000-8000-000000000000', lease_id: '00000000-0000-4000-8000-000000000000', status: 'failed' }],
  ] as const) {
    const res = await call(base, path, { token: w.token, json });
    t.is(res.status, 400, `${path} ${JSON.stringify(json)}`);
    t.is(code(res.body), 'bad_request');
  }
  const unknown = await call(base, '/result', {
    token: w.token,
    json: { job_id: '00000000-0000-4000-8000-000000000000', lease_id: '00000000-0000-4000-8000-000000000000', status: 'succeeded' },
  });
  t.is(unknown.status, 404);
  t.is((await call(base, '/jobs?max_jobs=abc', { token: w.token })).status, 400);
  t.is((await call(base, '/jobs?max_jobs=1', { token: w.token })).status, 200);
});

test.serial('metrics show queue depth, leases and lease expiries', async (t) => {
  const text = (await call<string>(base, '/metrics', { token: null })).body;
  t.regex(text, /cynode_jobs\{state="succeeded"\} [1-9]/);
  t.regex(text, /cynode_jobs_leased_total [1-9]/);
  t.regex(text, /cynode_lease_expiries_total [1-9]/);
  t.regex(text, /cynode_decisions_total\{entrypoint="cynode\/dispatch\/decision",result="allow"\} [1-9]/);
});
