import test from 'ava';
import pg from 'pg';
import { ensureBundle } from '../helpers/bundle.js';
import { call, eventually } from '../helpers/http.js';
import { type PrivatePostgres, type Replicas, startFleet, startPrivatePostgres, startReplicas } from '../helpers/replicas.js';
import { createPsk, registerWorker, submitJob } from '../helpers/workers.js';

// PostgreSQL crashes (pg_ctl stop -m immediate) under load and comes back. The database is
// a private cluster of this test's own, never the shared one on 5432. While it is down,
// every request that needs it fails closed with 503 and a stable code, never a 500; when it
// is back, both replicas resume by themselves within seconds and every job submitted
// before the outage completes, each with exactly one accepted result.

let cluster: PrivatePostgres | undefined;
let group: Replicas | undefined;
test.before(async () => {
  await ensureBundle();
});
test.after.always(async () => {
  await group?.stop();
  await cluster?.destroy();
});

test('a PostgreSQL crash mid-load: 503s while it is down, resumption by itself, nothing lost', async (t) => {
  cluster = await startPrivatePostgres();
  const url = await cluster.createDatabase('cynode');
  group = await startReplicas(2, {
    DATABASE_URL: url,
    CYNODE_DATABASE_CONNECT_TIMEOUT_MS: '1000',
    CYNODE_READY_CHECK_TIMEOUT_MS: '1000',
    CYNODE_JOB_LEASE_TTL_MS: '5000',
    CYNODE_WORKER_HEARTBEAT_INTERVAL_MS: '500',
    CYNODE_JOB_REAPER_INTERVAL_MS: '250',
    CYNODE_JOB_RETRY_BASE_MS: '100',
    CYNODE_JOB_RETRY_MAX_MS: '500',
    CYNODE_JOB_WAKE_FALLBACK_MS: '500',
  });
  const urls = group.urls();
  const psk = (await createPsk(urls[0]!)).secret;
  const tokens: string[] = [];
  for (let i = 0; i < 4; i++)
    tokens.push(
      (
        await registerWorker(urls[i % 2]!, psk, {
          node_id: `local-pg-${i}`,
          labels: ['local'],
          region: 'onprem',
          inference_mode: 'ollama_local',
          supported_providers: [],
          provider: undefined,
        })
      ).token,
    );
  const submit = (i: number) =>
    submitJob(
      urls[i % 2]!,
      { task_id: `task-pg-${i}`, user_id: 'user-pg', payload: { kind: 'echo', input: `n${i}` }, max_attempts: 20 },
      `pg-job-${i}`,
    );

  const before: string[] = [];
  for (let i = 0; i < 40; i++) {
    const res = await submit(i);
    t.is(res.status, 201);
    before.push(String(res.body.id));
  }
  const fleet = startFleet({ urls, tokens, workMs: 100 });
  t.teardown(() => fleet.stop());
  await eventually(() => fleet.stats.accepted.size >= 8, 20_000, 5);

  // The crash.
  await cluster.stop();
  const downAt = Date.now();
  const acceptedBefore = fleet.stats.accepted.size;
  const answers: { what: string; status: number; code: string | undefined }[] = [];
  const probe = async (what: string, p: Promise<{ status: number; body: unknown }>) => {
    const res = await p;
    answers.push({ what, status: res.status, code: (res.body as { error?: { code?: string } })?.error?.code });
  };
  const worker = tokens[0]!;
  let n = 1000;
  while (Date.now() - downAt < 3000) {
    for (const base of urls) {
      await Promise.all([
        probe(
          'submit',
          submit(n++).then((r) => ({ status: r.status, body: r.body })),
        ),
        probe('get job', call(base, `/v1/jobs/${before[0]}`)),
        probe('list jobs', call(base, '/v1/jobs?state=queued')),
        probe('poll', call(base, '/jobs/poll', { token: worker, json: { max_jobs: 1 } })),
        probe('status', call(base, '/status', { token: worker, json: { health: { ok: true }, jobs: [] } })),
        probe(
          'register',
          call(base, '/register', {
            token: null,
            json: { node_id: 'local-pg-x', labels: ['local'], region: 'onprem', inference_mode: 'ollama_local' },
            headers: { 'x-cynode-psk': psk },
          }),
        ),
        probe('setting', call(base, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: true } })),
        probe('readyz', call(base, '/readyz', { token: null })),
      ]);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const summary = [...new Set(answers.map((a) => `${a.what}:${a.status}:${a.code}`))].sort();
  t.log(`while PostgreSQL was down: ${answers.length} requests answered ${summary.join(', ')}`);
  t.true(answers.length > 0);
  t.deepEqual(
    answers.filter((a) => a.status !== 503),
    [],
    'every request that needs the database fails closed with 503',
  );
  t.true(
    answers.every((a) => a.code === 'database_unavailable'),
    summary.join(', '),
  );
  t.true(
    fleet.stats.serverErrors.every((e) => e.status === 503 && e.code === 'database_unavailable'),
    JSON.stringify(fleet.stats.serverErrors.slice(0, 5)),
  );
  for (const r of group.replicas) t.is(r.process.child.exitCode, null, 'the replica is still running');

  // Back up: both replicas serve again by themselves.
  await cluster.start();
  const upAt = Date.now();
  const resumedMs = await Promise.all(
    urls.map((base) =>
      eventually(
        async () => {
          const [ready, job] = await Promise.all([call(base, '/readyz', { token: null }), call(base, `/v1/jobs/${before[0]}`)]);
          return ready.status === 200 && job.status === 200;
        },
        15_000,
        50,
      ),
    ),
  );
  t.log(`PostgreSQL down ${upAt - downAt} ms; replicas ready again ${resumedMs.join(', ')} ms after it came back`);
  t.true(resumedMs.every((ms) => ms < 5000));
  const after = await submit(9999);
  t.is(after.status, 201, 'new work is accepted again');

  // Nothing lost: every job submitted before the outage (and any the outage answered 201 to) completes once.
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  t.teardown(() => db.end());
  await eventually(
    async () => (await db.query("SELECT count(*) AS n FROM jobs WHERE state <> 'succeeded'")).rows[0].n === '0',
    30_000,
    100,
  );
  await fleet.stop();
  const states = (await db.query<{ id: string; state: string }>('SELECT id, state FROM jobs')).rows;
  t.true(
    before.every((id) => states.some((s) => s.id === id && s.state === 'succeeded')),
    'every job submitted before the outage succeeded',
  );
  const accepted = (
    await db.query<{ job_id: string; n: string }>(
      "SELECT job_id, count(*) AS n FROM job_attempts WHERE outcome = 'succeeded' GROUP BY job_id",
    )
  ).rows;
  t.is(accepted.length, states.length);
  t.true(
    accepted.every((r) => r.n === '1'),
    'exactly one accepted result per job',
  );
  t.true(
    [...fleet.stats.accepted.keys()].every((id) => states.some((s) => s.id === id && s.state === 'succeeded')),
    'no accepted result lost',
  );
  t.log(
    `${states.length} jobs, ${acceptedBefore} results accepted before the crash, all succeeded; ${fleet.stats.failovers} failovers, ${fleet.stats.serverErrors.length} 503s seen by workers`,
  );
});
