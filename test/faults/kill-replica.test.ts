import { randomBytes } from 'node:crypto';
import test from 'ava';
import pg from 'pg';
import { ensureBundle } from '../helpers/bundle.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { call, eventually } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { type Replicas, startFleet, startReplicas } from '../helpers/replicas.js';
import { createPsk, registerWorker, submitJob } from '../helpers/workers.js';

// kill -9 of one of three replicas while workers spread over all three have jobs in flight:
// the workers fail over to the survivors, every job still ends succeeded with exactly one
// accepted result, no job is ever leased twice at once, and api.call jobs never spend past
// their task budget, with nothing left reserved once the dead replica's reservations lapse.

const JOBS = 90;
/** Every third job makes an api.call against the shared task budget. */
const isApi = (i: number) => i % 3 === 0;
const WORKERS = 6;
const LIMIT_USD = 0.0001; // about ten worst cases of the calls below: the budget binds
const TASK = 'task-kill';
let db: TestDatabase;
let fake: FakeProvider;
let group: Replicas | undefined;

test.before(async () => {
  await ensureBundle();
  fake = await startFakeProvider();
  db = await createTestDatabase();
});
test.after.always(async () => {
  await group?.stop();
  await fake?.close();
  await db?.drop();
});

test('kill -9 of a replica mid-load: 0 jobs lost, 0 results accepted twice, 0 overspend', async (t) => {
  group = await startReplicas(3, {
    DATABASE_URL: db.url,
    CYNODE_OPENAI_BASE_URL: fake.url,
    CYNODE_MASTER_KEY: randomBytes(32).toString('base64'),
    CYNODE_JOB_LEASE_TTL_MS: '3000',
    CYNODE_WORKER_HEARTBEAT_INTERVAL_MS: '500',
    CYNODE_JOB_REAPER_INTERVAL_MS: '250',
    CYNODE_JOB_RETRY_BASE_MS: '100',
    CYNODE_JOB_RETRY_MAX_MS: '500',
    CYNODE_JOB_WAKE_FALLBACK_MS: '500',
    CYNODE_EGRESS_RESERVATION_TTL_MS: '10000',
    CYNODE_EGRESS_REAPER_INTERVAL_MS: '250',
    CYNODE_EGRESS_CONNECT_TIMEOUT_MS: '60000',
  });
  const urls = group.urls();
  const [u0] = urls as [string];
  t.is(
    (
      await call(u0, '/v1/credentials', {
        json: { provider: 'openai', name: 'main', secret: `sk-kill-${randomBytes(16).toString('hex')}` },
      })
    ).status,
    201,
  );
  t.is((await call(u0, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } })).status, 200);
  t.is((await call(u0, `/v1/budgets/task/${TASK}`, { method: 'PUT', json: { limit_usd: LIMIT_USD } })).status, 200);
  const psk = (await createPsk(u0)).secret;
  const tokens: string[] = [];
  for (let i = 0; i < WORKERS; i++) tokens.push((await registerWorker(urls[i % 3]!, psk, { node_id: `cloud-kill-${i}` })).token);

  // Jobs submitted round robin over the replicas; api.call jobs share one task budget.
  const ids: string[] = [];
  const submit = async (i: number, base = urls[i % 3]!) => {
    const api = isApi(i);
    const res = await submitJob(base, {
      task_id: api ? TASK : `task-echo-${i}`,
      user_id: 'user-kill',
      requirements: { labels: ['cloud'] },
      payload: api ? { kind: 'api.call' } : { kind: 'echo', input: `n${i}` },
      max_attempts: 20,
    });
    if (res.status !== 201) throw new Error(`submit ${i}: ${res.status} ${JSON.stringify(res.body)}`);
    ids.push(String(res.body.id));
  };
  for (let i = 0; i < (JOBS * 2) / 3; i++) await submit(i);

  // One api.call left hanging at the provider through replica 1: its reservation dies with
  // the replica and must lapse (charged in full) on the survivors, never stay reserved.
  fake.next('hang');
  const orphan = call(urls[1]!, '/v1/api/call', {
    json: {
      provider: 'openai',
      operation: 'chat.completions',
      task_id: TASK,
      params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hang' }], max_tokens: 16 },
    },
  }).catch((err: unknown) => err);
  await eventually(() => fake.received.length === 1, 5000, 5);

  const fleet = startFleet({
    urls,
    tokens,
    workMs: 150,
    apiCall: (job) =>
      job.payload.kind === 'api.call'
        ? {
            provider: 'openai',
            operation: 'chat.completions',
            task_id: TASK,
            job_id: job.job_id,
            params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 },
          }
        : undefined,
  });
  t.teardown(() => fleet.stop());
  // Kill replica 1 while work is under way, then submit the rest to the survivors.
  await eventually(() => fleet.stats.accepted.size >= 20, 20_000, 5);
  const killedAt = Date.now();
  await group.replicas[1]!.kill();
  t.true((await orphan) instanceof Error, 'the call in flight on the killed replica got no answer');
  const acceptedAtKill = fleet.stats.accepted.size;
  const callsAtKill = fleet.stats.apiCalls.length;
  for (let i = (JOBS * 2) / 3; i < JOBS; i++) await submit(i, [urls[0]!, urls[2]!][i % 2]!);

  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  t.teardown(() => pool.end());
  const states = async () => (await pool.query<{ state: string; n: string }>('SELECT state, count(*) AS n FROM jobs GROUP BY state')).rows;
  const drainMs = await eventually(async () => (await states()).every((r) => r.state === 'succeeded'), 40_000, 100);
  await fleet.stop();
  const { stats } = fleet;
  t.log(
    `killed replica 1 after ${acceptedAtKill} results and ${callsAtKill} api.calls; all ${JOBS} jobs succeeded ${Date.now() - killedAt} ms after the kill (drain wait ${drainMs} ms); ` +
      `${stats.failovers} failovers, ${stats.superseded} results refused for lapsed leases`,
  );

  // 0 jobs lost: every job submitted ended succeeded.
  t.deepEqual(await states(), [{ state: 'succeeded', n: String(JOBS) }]);
  t.is(ids.length, JOBS);
  // 0 results accepted twice: each job has exactly one accepted attempt.
  const accepted = (
    await pool.query<{ job_id: string; n: string }>(
      "SELECT job_id, count(*) AS n FROM job_attempts WHERE outcome = 'succeeded' GROUP BY job_id",
    )
  ).rows;
  t.is(accepted.length, JOBS);
  t.true(
    accepted.every((r) => r.n === '1'),
    'one accepted result per job',
  );
  // Never double-assigned: a job's attempts never overlap in time.
  const attempts = (
    await pool.query<{ job_id: string; leased_at: Date; ended_at: Date | null; outcome: string | null }>(
      'SELECT job_id, leased_at, ended_at, outcome FROM job_attempts ORDER BY job_id, leased_at',
    )
  ).rows;
  let overlaps = 0;
  for (let i = 1; i < attempts.length; i++) {
    const [a, b] = [attempts[i - 1]!, attempts[i]!];
    if (a.job_id === b.job_id && (a.ended_at === null || a.ended_at > b.leased_at)) overlaps++;
  }
  t.is(overlaps, 0, 'no job held by two leases at once');
  t.true(
    attempts.every((a) => a.outcome !== null),
    'every attempt ended',
  );
  t.log(
    `${attempts.length} attempts for ${JOBS} jobs (${attempts.filter((a) => a.outcome === 'expired').length} lapsed with the killed replica)`,
  );

  // 0 overspend: spent within the limit, and the ledger balances once reservations lapse.
  const budget = async () =>
    (await call<{ spent_usd: number; reserved_usd: number; limit_usd: number }>(u0, `/v1/budgets/task/${TASK}`)).body;
  await eventually(async () => (await budget()).reserved_usd === 0, 15_000, 100);
  const b = await budget();
  const allowed = stats.apiCalls.filter((c) => c.status === 200).length;
  const refused = stats.apiCalls.filter((c) => c.code === 'budget_exceeded').length;
  t.log(
    `api.call: ${allowed} allowed, ${refused} refused budget_exceeded, 1 cut off by the kill; spent $${b.spent_usd} of $${LIMIT_USD}; ${fake.received.length} calls reached the provider`,
  );
  t.true(b.spent_usd <= LIMIT_USD, `spent ${b.spent_usd} <= ${LIMIT_USD}`);
  t.true(allowed > 0 && refused > 0, 'the budget admitted calls and then refused them');
  t.true(
    stats.apiCalls.every((c) => c.status === 200 || c.code === 'budget_exceeded'),
    JSON.stringify(stats.apiCalls.filter((c) => c.status !== 200)),
  );
  const ledger = (
    await pool.query<{ spent: string; reserved: string; charged: string; open: string }>(
      `SELECT b.spent_micros AS spent, b.reserved_micros AS reserved,
              (SELECT coalesce(sum(cost_micros), 0) FROM budget_reservations WHERE state IN ('settled', 'released', 'expired')) AS charged,
              (SELECT count(*) FROM budget_reservations WHERE state IN ('pending', 'held')) AS open
         FROM budgets b WHERE b.scope = 'task' AND b.subject_id = $1`,
      [TASK],
    )
  ).rows[0]!;
  t.deepEqual(
    ledger,
    { spent: ledger.charged, reserved: '0', charged: ledger.charged, open: '0' },
    'spent equals the sum of settled charges; nothing held',
  );
  const expired = (await pool.query<{ n: string }>("SELECT count(*) AS n FROM budget_reservations WHERE state = 'expired'")).rows[0]!.n;
  t.log(`ledger: spent ${ledger.spent} µ$ = settled charges ${ledger.charged} µ$; ${expired} reservations lapsed and were charged in full`);
  t.true(Number(expired) >= 1, 'the reservation of the call cut off by the kill lapsed and was charged');
  t.deepEqual(stats.serverErrors, [], 'no 5xx from the surviving replicas');
  t.true(stats.failovers >= 2, 'the workers homed on the killed replica moved to the survivors');
});
