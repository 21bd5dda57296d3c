import { randomUUID } from 'node:crypto';
import test from 'ava';
import pg from 'pg';
import pino from 'pino';
import { createLeaseLookup, LEASES_CHANNEL, type LeaseLookup } from '../../src/mcp/leases.js';
import { type ChannelListener, listenChannels } from '../../src/storage/listener.js';
import { connectAndMigrate, type Database } from '../../src/storage/index.js';
import { jobRow } from '../helpers/fixtures.js';
import { eventually } from '../helpers/http.js';
import { ADMIN_URL, createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

let tdb: TestDatabase;
let db: Database;
let listener: ChannelListener;
let lookup: LeaseLookup;
let statements = 0;
// A frozen clock: a remembered lease never runs out by age here, so only an announcement can drop it.
const frozen = Date.now();

test.before(async () => {
  tdb = await createTestDatabase();
  db = await connectAndMigrate(
    { url: tdb.url, dataDir: '', poolMax: 4, connectTimeoutMs: 5000, startupTimeoutMs: 0 },
    pino({ level: 'silent' }),
  );
  db.knex.on('query', (q: { sql: string }) => {
    if (q.sql.startsWith('select id, task_id, lease_expires_at from jobs')) statements++;
  });
  lookup = createLeaseLookup({ knex: db.knex, listening: () => listener.listening(LEASES_CHANNEL), now: () => frozen });
  listener = listenChannels({
    url: tdb.url,
    channels: { [LEASES_CHANNEL]: (node) => lookup.ended(node || undefined) },
    logger: pino({ level: 'silent' }),
  });
  await eventually(() => listener.listening(LEASES_CHANNEL));
});
test.after.always(async () => {
  await listener?.close();
  await db?.close();
  await tdb?.drop();
});

/** A job leased by `node` for an hour, straight into the table. */
async function leasedJob(node: string, task = `task-${randomUUID().slice(0, 8)}`): Promise<{ id: string; task: string }> {
  const id = randomUUID();
  const at = new Date(frozen);
  await db.knex('jobs').insert(jobRow(id, task, at, { node, until: new Date(frozen + 3_600_000) }));
  return { id, task };
}

/** Reads twice; answers how many statements that took (1: the second was remembered). */
async function readsTwice(node: string, key: { jobId: string } | { taskId: string }) {
  const before = statements;
  const first = await lookup.find(node, key);
  const second = await lookup.find(node, key);
  return { first, second, statements: statements - before };
}

test.serial('a live lease is read once and then answered from memory, by job and by task', async (t) => {
  const job = await leasedJob('node-a');
  const byJob = await readsTwice('node-a', { jobId: job.id });
  t.like(byJob.first, { jobId: job.id, taskId: job.task });
  t.deepEqual(byJob.second, byJob.first);
  t.is(byJob.statements, 1);
  const byTask = await readsTwice('node-a', { taskId: job.task });
  t.like(byTask.second, { jobId: job.id, taskId: job.task });
  t.is(byTask.statements, 1);
  t.is((await readsTwice('node-b', { jobId: job.id })).first, undefined, 'another node does not hold it');
  t.is((await readsTwice('node-b', { jobId: job.id })).statements, 2, 'no lease is never remembered');
});

// Each way a lease ends, as the job queue writes it: the remembered lease is gone at once.
const ENDS: [string, Record<string, unknown>][] = [
  ['a result', { state: 'succeeded', finished_at: new Date(frozen) }],
  ['a cancel', { state: 'cancelled', finished_at: new Date(frozen) }],
  ['a requeue or a release', { state: 'queued', lease_id: null, leased_by: null, lease_expires_at: null }],
  ['a shortened lease', { lease_expires_at: new Date(frozen + 60_000) }],
];
for (const [what, patch] of ENDS) {
  test.serial(`${what} written on another connection is refused as soon as it is announced`, async (t) => {
    const job = await leasedJob('node-end');
    t.truthy((await readsTwice('node-end', { jobId: job.id })).second);
    const other = new pg.Client({ connectionString: tdb.url });
    await other.connect();
    const sets = Object.keys(patch).map((k, i) => `${k} = $${i + 2}`);
    await other.query(`update jobs set ${sets.join(', ')} where id = $1`, [job.id, ...Object.values(patch)]);
    await other.end();
    // The clock is frozen: nothing but the announcement can make the lookup read again.
    await eventually(async () => {
      const before = statements;
      const lease = await lookup.find('node-end', { jobId: job.id });
      return statements > before && (what !== 'a shortened lease' ? lease === undefined : lease?.expiresAtMs === frozen + 60_000);
    }, 2000);
    t.pass();
  });
}

test.serial('a renewal is no end: nothing is announced and the lease is still remembered', async (t) => {
  const job = await leasedJob('node-renew');
  await lookup.find('node-renew', { jobId: job.id });
  const heard: string[] = [];
  const probe = new pg.Client({ connectionString: tdb.url });
  await probe.connect();
  probe.on('notification', (m) => heard.push(m.payload ?? ''));
  await probe.query(`LISTEN ${LEASES_CHANNEL}`);
  await db
    .knex('jobs')
    .where({ id: job.id })
    .update({ lease_expires_at: new Date(frozen + 7_200_000) });
  await new Promise((r) => setTimeout(r, 100));
  t.is((await readsTwice('node-renew', { jobId: job.id })).statements, 0, 'still remembered after the renewal');
  await db.knex('jobs').where({ id: job.id }).delete();
  await eventually(() => heard.length > 0);
  t.deepEqual(heard, ['node-renew'], 'the delete of a leased job is announced, the renewal before it is not');
  await probe.end();
});

test.serial('calls that miss at once share one read', async (t) => {
  const job = await leasedJob('node-many');
  const before = statements;
  const found = await Promise.all(Array.from({ length: 8 }, () => lookup.find('node-many', { jobId: job.id })));
  t.is(statements - before, 1);
  t.true(found.every((l) => l?.jobId === job.id));
});

test.serial('a read that overlapped an announcement for its node is not remembered, nor joined by later calls', async (t) => {
  const job = await leasedJob('node-race');
  const before = statements;
  const reading = lookup.find('node-race', { jobId: job.id });
  lookup.ended('node-race'); // announced while the read was in flight: it may have seen the row before the end
  const after = lookup.find('node-race', { jobId: job.id });
  t.truthy(await reading);
  t.truthy(await after);
  t.is(statements - before, 2, 'the call after the announcement read on its own');
  t.is((await readsTwice('node-race', { jobId: job.id })).statements, 0, 'the read begun after the announcement is kept');
});

test.serial('with the LISTEN connection lost nothing is remembered; after the reconnect reuse resumes', async (t) => {
  const job = await leasedJob('node-down');
  t.is((await readsTwice('node-down', { jobId: job.id })).statements, 1);
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(
    `select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and application_name = 'cynode-gateway-listen'`,
    [tdb.name],
  );
  await admin.end();
  await eventually(() => !listener.listening(LEASES_CHANNEL), 2000, 1);
  t.is((await readsTwice('node-down', { jobId: job.id })).statements, 2, 'every call reads while no end can be heard');
  await eventually(() => listener.listening(LEASES_CHANNEL), 5000);
  t.is((await readsTwice('node-down', { jobId: job.id })).statements, 1);
});
