import { randomUUID } from 'node:crypto';
import test from 'ava';
import pino from 'pino';
import { createDecisionLog } from '../../src/decisions/index.js';
import { migrateLatest, openDatabase } from '../../src/storage/index.js';
import { testConfig } from '../helpers/config.js';
import { runCli } from '../helpers/gateway.js';
import { createTestDatabase } from '../helpers/postgres.js';

test('audit verify passes an intact decision log and names the row an attacker edited', async (t) => {
  const pgDb = await createTestDatabase();
  t.teardown(() => pgDb.drop());
  const db = await openDatabase(testConfig({ DATABASE_URL: pgDb.url }).database, pino({ level: 'silent' }));
  t.teardown(() => db.close());
  await migrateLatest(db.knex);
  const log = createDecisionLog(db.knex, pino({ level: 'silent' }), { bufferSize: 100, flushIntervalMs: 10, enqueueTimeoutMs: 100 });
  for (let i = 0; i < 20; i++) {
    await log.record({
      decision_id: randomUUID(),
      path: 'cynode/register/decision',
      input: { i },
      result: { allow: false, reasons: ['context_missing'] },
      erased: [],
      revision: 'r',
      bundle_digest: null,
      requested_by: 'admin',
      timestamp: new Date(),
      eval_ns: 1000,
    });
  }
  await log.close();
  const env = { DATABASE_URL: pgDb.url, CYNODE_LOG_LEVEL: 'silent' };
  const ok = await runCli(['audit', 'verify'], env);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /20 rows, hash chain intact/);

  await db.knex.raw('ALTER TABLE decision_log DISABLE TRIGGER decision_log_append_only');
  const [row] = (await db.knex('decision_log').orderBy('seq').offset(4).limit(1).select('seq')) as { seq: string }[];
  await db
    .knex('decision_log')
    .where({ seq: row!.seq })
    .update({ result: JSON.stringify({ allow: true, reasons: [] }) });
  const bad = await runCli(['audit', 'verify'], env);
  t.is(bad.code, 1);
  t.regex(bad.stdout, new RegExp(`chain broken at seq ${row!.seq} \\(hash_mismatch\\)`));
});
