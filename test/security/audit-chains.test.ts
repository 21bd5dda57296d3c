import { randomUUID } from 'node:crypto';
import test from 'ava';
import pg from 'pg';
import pino from 'pino';
import { createDecisionLog } from '../../src/decisions/index.js';
import { createAuditLog } from '../../src/egress/audit.js';
import { createToolAudit } from '../../src/mcp/index.js';
import { createWorkerAudit } from '../../src/workers/audit.js';
import { openDatabase } from '../../src/storage/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { testConfig } from '../helpers/config.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { runCli } from '../helpers/gateway.js';
import { call, eventually } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { createPsk, poll, registerWorker, submitJob } from '../helpers/workers.js';

/*
 * Every hash-chained table (decision log, api.call audit, tool audit, worker audit), filled by real traffic,
 * verified by the real CLI (`cynode-gateway audit verify`), then tampered with the way a DBA
 * with superuser could — trigger disabled, a row edited or deleted — and caught.
 */

/** Each chained table, its append-only trigger, the CLI's name for it, and an edit that rewrites history (a decision flipped, a call pinned on someone else, an outcome changed). */
const CHAINS = [
  {
    table: 'decision_log',
    trigger: 'decision_log_append_only',
    name: 'decision log',
    column: 'result',
    forge: `jsonb_set(result, '{allow}', to_jsonb(NOT (result->>'allow')::boolean))`,
  },
  { table: 'api_audit', trigger: 'api_audit_append_only', name: 'api audit', column: 'subject_id', forge: `'someone-else'` },
  {
    table: 'tool_audit',
    trigger: 'tool_audit_append_only',
    name: 'tool audit',
    column: 'outcome',
    forge: `CASE WHEN outcome = 'ok' THEN 'denied' ELSE 'ok' END`,
  },
  {
    table: 'worker_audit',
    trigger: 'worker_audit_append_only',
    name: 'worker audit',
    column: 'action',
    forge: `CASE WHEN action = 'quarantine' THEN 'release' ELSE 'quarantine' END`,
  },
] as const;
/** The fewest columns each chained table has besides seq, prev_hash and hash. */
const MIN_COLUMNS: Record<(typeof CHAINS)[number]['table'], number> = { decision_log: 10, api_audit: 10, tool_audit: 10, worker_audit: 6 };

let db: TestDatabase;
let fake: FakeProvider;
let gw: BootedGateway | undefined;
let superuser: pg.Client;

const t200 = (res: { status: number; body: unknown }, what: string) => {
  if (res.status !== 200) throw new Error(`${what} failed: ${res.status} ${JSON.stringify(res.body)}`);
};

const verify = () => runCli(['audit', 'verify'], { DATABASE_URL: db.url, CYNODE_LOG_LEVEL: 'silent' });
const seqs = async (table: string) =>
  ((await superuser.query(`select seq from ${table} order by seq`)).rows as { seq: string }[]).map((r) => r.seq);
/** Runs `sql` on `table` with its append-only trigger off, as a superuser can. */
const behindTrigger = async (chain: (typeof CHAINS)[number], sql: string, params: unknown[] = []) => {
  await superuser.query(`ALTER TABLE ${chain.table} DISABLE TRIGGER ${chain.trigger}`);
  try {
    await superuser.query(sql, params);
  } finally {
    await superuser.query(`ALTER TABLE ${chain.table} ENABLE TRIGGER ${chain.trigger}`);
  }
};

test.before(async () => {
  fake = await startFakeProvider();
  db = await createTestDatabase(); // outlives the gateway: the tests verify and tamper with what it wrote
  gw = await bootGateway({ env: { CYNODE_OPENAI_BASE_URL: fake.url }, roles: ['control', 'mcp', 'egress'], database: db });
  const base = gw.url('control');
  await call(base, '/v1/credentials', { json: { provider: 'openai', name: 'main', secret: `sk-chain-${randomUUID()}` } });
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  await call(base, '/v1/budgets/task/task-a', { method: 'PUT', json: { limit_usd: 1 } });
  const worker = await registerWorker(base, (await createPsk(base)).secret);
  const jobId = String(
    (await submitJob(base, { task_id: 'task-a', user_id: 'user-a', requirements: { labels: ['cloud'] }, payload: { kind: 'api.call' } }))
      .body.id,
  );
  await eventually(async () => (await poll(base, worker)).body.jobs.some((j) => j.job_id === jobId), 10_000);
  // api.call over REST (allowed, and denied at the first gate), and as MCP tool calls.
  const params = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 };
  for (let i = 0; i < 3; i++) {
    const res = await call(base, '/v1/api/call', {
      token: worker.token,
      json: { provider: 'openai', operation: 'chat.completions', task_id: 'task-a', job_id: jobId, params },
    });
    if (res.status !== 200) throw new Error(`api.call failed: ${JSON.stringify(res.body)}`);
  }
  await call(base, '/v1/api/call', {
    token: worker.token,
    json: { provider: 'openai', operation: 'chat.completions', task_id: 'task-a', job_id: jobId, params: { ...params, model: 'gpt-nope' } },
  });
  for (const job of [jobId, randomUUID(), randomUUID()]) {
    await fetch(`${gw.url('mcp')}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${worker.token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: {
          name: 'api.call',
          arguments: { provider: 'openai', operation: 'chat.completions', task_id: 'task-a', job_id: job, params },
        },
      }),
    }).then((r) => r.arrayBuffer());
  }
  // Quarantine, release and quarantine again: three rows of the worker audit.
  const spare = await registerWorker(base, (await createPsk(base)).secret, { node_id: 'cloud-chain-q' });
  for (const step of ['quarantine', 'release', 'quarantine'])
    t200(await call(base, `/v1/workers/${spare.nodeId}/${step}`, { json: step === 'quarantine' ? { reason: 'chain test' } : {} }), step);
  await gw.gateway.stop(); // flushes every log; the chains are now what an operator would verify
  gw = undefined;
  superuser = new pg.Client({ connectionString: db.url });
  await superuser.connect();
});

test.after.always(async () => {
  await superuser?.end();
  await gw?.stop();
  await fake?.close();
  await db?.drop();
});

test.serial('audit verify passes every untouched chain, and the append-only triggers refuse edits', async (t) => {
  const started = Date.now();
  const ok = await verify();
  t.log(`audit verify took ${Date.now() - started} ms`);
  t.is(ok.code, 0, ok.stdout + ok.stderr);
  for (const chain of CHAINS) {
    const n = (await seqs(chain.table)).length;
    t.true(n >= 3, `${chain.table} has ${n} rows`);
    t.true(ok.stdout.includes(`${chain.name}: ${n} rows, hash chain intact`), ok.stdout);
    await t.throwsAsync(superuser.query(`UPDATE ${chain.table} SET ${chain.column} = ${chain.forge}`), { message: /append-only/ });
    await t.throwsAsync(superuser.query(`DELETE FROM ${chain.table}`), { message: /append-only/ });
  }
});

test.serial('an edited row is found in every chain, by its sequence number; restoring it makes the chain whole again', async (t) => {
  const edited = new Map<string, { seq: string; original: string | null }>();
  for (const chain of CHAINS) {
    const all = await seqs(chain.table);
    const seq = all[Math.floor(all.length / 2)]!;
    const original = (
      (await superuser.query(`select ${chain.column}::text as v from ${chain.table} where seq = $1`, [seq])).rows[0] as { v: string | null }
    ).v;
    await behindTrigger(chain, `UPDATE ${chain.table} SET ${chain.column} = ${chain.forge} WHERE seq = $1`, [seq]);
    const changed = (
      (await superuser.query(`select ${chain.column}::text as v from ${chain.table} where seq = $1`, [seq])).rows[0] as { v: string | null }
    ).v;
    t.not(changed, original, `${chain.table}: the edit changed something`);
    edited.set(chain.table, { seq, original });
  }
  const bad = await verify();
  t.is(bad.code, 1);
  for (const chain of CHAINS)
    t.true(bad.stdout.includes(`${chain.name}: chain broken at seq ${edited.get(chain.table)!.seq} (hash_mismatch)`), bad.stdout);

  for (const chain of CHAINS) {
    const { seq, original } = edited.get(chain.table)!;
    const type = chain.column === 'result' ? 'jsonb' : 'text';
    await behindTrigger(chain, `UPDATE ${chain.table} SET ${chain.column} = $2::${type} WHERE seq = $1`, [seq, original]);
  }
  const restored = await verify();
  t.is(restored.code, 0, restored.stdout);
});

test.serial('a deleted row is found in every chain, in the middle or at the start', async (t) => {
  for (const where of ['middle', 'start'] as const) {
    const removed = new Map<string, { seq: string; next: string }>();
    for (const chain of CHAINS) {
      const all = await seqs(chain.table);
      const i = where === 'middle' ? Math.floor(all.length / 2) : 0;
      removed.set(chain.table, { seq: all[i]!, next: all[i + 1]! });
      await superuser.query(`CREATE TEMP TABLE saved_${chain.table} AS SELECT * FROM ${chain.table} WHERE seq = ${Number(all[i])}`);
      await behindTrigger(chain, `DELETE FROM ${chain.table} WHERE seq = $1`, [all[i]]);
    }
    const bad = await verify();
    t.is(bad.code, 1, `${where}: ${bad.stdout}`);
    for (const chain of CHAINS) {
      // The row after the gap no longer links to its predecessor.
      t.true(
        bad.stdout.includes(`${chain.name}: chain broken at seq ${removed.get(chain.table)!.next} (link_broken)`),
        `${where}: ${bad.stdout}`,
      );
    }
    for (const chain of CHAINS) {
      await superuser.query(`INSERT INTO ${chain.table} SELECT * FROM saved_${chain.table}`);
      await superuser.query(`DROP TABLE saved_${chain.table}`);
    }
    const whole = await verify();
    t.is(whole.code, 0, `${where}, put back: ${whole.stdout}`);
  }
});

/** A change to a value of each column type that always makes it different (null included). */
const CHANGE: Record<string, (column: string) => string> = {
  text: (c) => `coalesce(${c}, '') || 'x'`,
  jsonb: (c) => `jsonb_build_array(${c})`,
  uuid: () => 'gen_random_uuid()',
  'timestamp with time zone': (c) => `coalesce(${c}, now()) + interval '1 second'`,
  bigint: (c) => `coalesce(${c}, 0) + 1`,
  integer: (c) => `coalesce(${c}, 0) + 1`,
  numeric: (c) => `coalesce(${c}, 0) + 1`,
  'double precision': (c) => `coalesce(${c}, 0) + 1`,
  boolean: (c) => `NOT coalesce(${c}, false)`,
};

test.serial('every column of every chained table is covered by its hash: changing any one of them breaks the chain there', async (t) => {
  const db2 = await openDatabase(testConfig({ DATABASE_URL: db.url }).database, pino({ level: 'silent' }));
  t.teardown(() => db2.close());
  const quiet = pino({ level: 'silent' });
  const options = { bufferSize: 1, flushIntervalMs: 60_000, enqueueTimeoutMs: 1 };
  const verifiers = {
    decision_log: createDecisionLog(db2.knex, quiet, options),
    api_audit: createAuditLog(db2.knex, quiet, options),
    tool_audit: createToolAudit(db2.knex, quiet, options),
    worker_audit: createWorkerAudit(db2.knex, quiet, options),
  };
  let edits = 0;
  for (const chain of CHAINS) {
    const verifier = verifiers[chain.table];
    t.teardown(() => verifier.close());
    const all = await seqs(chain.table);
    const seq = all[Math.floor(all.length / 2)]!;
    const columns = (
      (
        await superuser.query(
          "select column_name, data_type from information_schema.columns where table_name = $1 and column_name not in ('seq', 'prev_hash', 'hash')",
          [chain.table],
        )
      ).rows as {
        column_name: string;
        data_type: string;
      }[]
    ).map((r) => ({ name: r.column_name, type: r.data_type }));
    t.true(columns.length >= MIN_COLUMNS[chain.table], `${chain.table}: ${columns.length} columns`);
    await superuser.query(`CREATE TEMP TABLE saved AS SELECT * FROM ${chain.table} WHERE seq = ${Number(seq)}`);
    for (const column of columns) {
      const change = CHANGE[column.type];
      if (!change) {
        t.fail(`${chain.table}.${column.name}: no edit for type ${column.type}`);
        continue;
      }
      await behindTrigger(chain, `UPDATE ${chain.table} SET ${column.name} = ${change(column.name)} WHERE seq = $1`, [seq]);
      const result = await verifier.verify();
      t.deepEqual(result.break, { seq, reason: 'hash_mismatch' }, `${chain.table}.${column.name} (${column.type}) is covered by the hash`);
      await behindTrigger(chain, `UPDATE ${chain.table} t SET ${column.name} = s.${column.name} FROM saved s WHERE t.seq = s.seq`);
      edits++;
    }
    await superuser.query('DROP TABLE saved');
    t.is((await verifier.verify()).break, undefined, `${chain.table} is whole again`);
  }
  t.log(`${edits} single-column edits, each caught`);
});
