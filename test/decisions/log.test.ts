import { randomUUID } from 'node:crypto';
import test from 'ava';
import pino from 'pino';
import { createDecisionLog, type DecisionEvent, maskInput, MASKED } from '../../src/decisions/index.js';
import { migrateLatest, openDatabase, type Database } from '../../src/storage/index.js';
import { testConfig } from '../helpers/config.js';
import { eventually } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const silent = pino({ level: 'silent' });
let pgDb: TestDatabase;
let db: Database;

test.before(async () => {
  pgDb = await createTestDatabase();
  db = await openDatabase(testConfig({ DATABASE_URL: pgDb.url }).database, silent);
  await migrateLatest(db.knex);
});
test.after.always(async () => {
  await db?.close();
  await pgDb?.drop();
});

function event(n: number, input: unknown = { n }): DecisionEvent {
  return {
    decision_id: randomUUID(),
    path: 'cynode/register/decision',
    input,
    result: { allow: n % 2 === 0, reasons: n % 2 === 0 ? [] : ['region_not_allowed'] },
    erased: [],
    revision: 'r1',
    bundle_digest: 'd'.repeat(64),
    requested_by: 'admin',
    timestamp: new Date(1_800_000_000_000 + n),
    eval_ns: 1234 + n,
  };
}

const options = { bufferSize: 1000, flushIntervalMs: 10, enqueueTimeoutMs: 500 };

test.serial('decisions are stored, read back in OPA shape, and chained', async (t) => {
  await db.knex.raw('TRUNCATE decision_log');
  const log = createDecisionLog(db.knex, silent, options);
  const events = Array.from({ length: 1200 }, (_, i) => event(i));
  await Promise.all(events.map((e) => log.record(e)));
  await log.flush();
  const back = await log.get(events[7]!.decision_id);
  t.deepEqual(back, events[7]);
  const verified = await log.verify();
  t.is(verified.rows, 1200);
  t.is(verified.break, undefined);
  await log.close();
});

test.serial('the table is append-only: UPDATE and DELETE are refused', async (t) => {
  const [row] = (await db.knex('decision_log').select('seq').limit(1)) as { seq: string }[];
  await t.throwsAsync(() => db.knex('decision_log').where({ seq: row!.seq }).update({ path: 'x' }), { message: /append-only/ });
  await t.throwsAsync(() => db.knex('decision_log').where({ seq: row!.seq }).delete(), { message: /append-only/ });
});

test.serial('an edited row and a deleted row are both detected by verify', async (t) => {
  const log = createDecisionLog(db.knex, silent, options);
  // An attacker with table-owner rights can switch the trigger off; the hash chain still tells.
  await db.knex.raw('ALTER TABLE decision_log DISABLE TRIGGER decision_log_append_only');
  try {
    const [victim] = (await db.knex('decision_log').orderBy('seq').offset(10).limit(1).select('seq')) as { seq: string }[];
    await db
      .knex('decision_log')
      .where({ seq: victim!.seq })
      .update({ result: JSON.stringify({ allow: true, reasons: ['edited'] }) });
    t.deepEqual((await log.verify()).break, { seq: String(victim!.seq), reason: 'hash_mismatch' });

    await db.knex('decision_log').where({ seq: victim!.seq }).delete();
    const after = await log.verify();
    t.is(after.break?.reason, 'link_broken');
    t.is(after.break?.seq, String(Number(victim!.seq) + 1));
  } finally {
    await db.knex.raw('ALTER TABLE decision_log ENABLE TRIGGER decision_log_append_only');
    await log.close();
  }
});

test.serial('a database outage fills the bounded buffer, refuses past it, and loses nothing', async (t) => {
  const proxy = await startTcpProxy('127.0.0.1', 5432);
  t.teardown(() => proxy.close());
  const url = new URL(pgDb.url);
  url.port = String(proxy.port);
  const viaProxy = await openDatabase(
    testConfig({ DATABASE_URL: url.toString(), CYNODE_DATABASE_CONNECT_TIMEOUT_MS: '300' }).database,
    silent,
  );
  t.teardown(() => viaProxy.close());
  await db.knex.raw('ALTER TABLE decision_log DISABLE TRIGGER decision_log_append_only');
  await db.knex.raw('TRUNCATE decision_log');
  await db.knex.raw('ALTER TABLE decision_log ENABLE TRIGGER decision_log_append_only');

  const log = createDecisionLog(viaProxy.knex, silent, { bufferSize: 5, flushIntervalMs: 20, enqueueTimeoutMs: 300 });
  proxy.cut();
  const accepted = Array.from({ length: 5 }, (_, i) => event(i));
  for (const e of accepted) await log.record(e);
  const err = await t.throwsAsync(() => log.record(event(99)));
  t.is((err as unknown as { code: string }).code, 'decision_log_unavailable');
  t.is(log.pending(), 5);

  proxy.restore();
  // The buffer drains by itself once the database is back (bounded wait, not a fixed sleep).
  await eventually(async () => {
    await log.flush().catch(() => undefined);
    return log.pending() === 0;
  }, 10_000);
  const stored = (await db.knex('decision_log').pluck('decision_id')) as string[];
  t.deepEqual(stored.sort(), accepted.map((e) => e.decision_id).sort());
  t.is((await log.verify()).break, undefined);
  await log.close();
});

test('masking replaces configured pointers, records them, and keeps jsonb-unsafe text storable', (t) => {
  const input = {
    subject: { node_id: 'n1', psk: 'psk_secret' },
    resource: { params: { api_key: 'sk-123', 'a/b': 1 } },
    context: { note: 'nul\u0000here' },
  };
  const { input: masked, erased } = maskInput(input, [
    '/subject/psk',
    '/resource/params/api_key',
    '/context/credentials',
    '/resource/params/a~1b',
  ]);
  t.deepEqual(erased, ['/subject/psk', '/resource/params/api_key', '/resource/params/a~1b']);
  t.deepEqual(masked, {
    subject: { node_id: 'n1', psk: MASKED },
    resource: { params: { api_key: MASKED, 'a/b': MASKED } },
    context: { note: 'nul\uFFFDhere' },
  });
  t.is(input.subject.psk, 'psk_secret', "the caller's input is not changed");
  const proto = maskInput(JSON.parse('{"__proto__": {"polluted": true}}'), []).input as Record<string, unknown>;
  t.true(Object.prototype.hasOwnProperty.call(proto, '__proto__'));
  t.is(({} as Record<string, unknown>).polluted, undefined);
});
