import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import pg from 'pg';
import pino from 'pino';
import { RESERVATION_RETENTION_MS } from '../../src/audit/retention.js';
import type { Checkpoint } from '../../src/audit/checkpoint.js';
import { checkpointSignatureValid } from '../../src/audit/checkpoint.js';
import { createLedger } from '../../src/egress/ledger.js';
import { openDatabase } from '../../src/storage/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { tempDir, testConfig } from '../helpers/config.js';
import { runCli } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { createPsk, registerWorker } from '../helpers/workers.js';

/*
 * Signed checkpoints of the hash chains, written at shutdown to PostgreSQL and to an outside
 * sink (a file for the first gateway, an HTTP endpoint for the second), then used the way an
 * auditor would: prune keeps the rest verifiable, and a superuser who truncates the newest rows
 * or rewrites the chain's end (trigger off, checkpoints in PostgreSQL deleted too) is caught by
 * `audit verify --checkpoints`.
 */

let db: TestDatabase;
let superuser: pg.Client;
let sinkFile: string;
let sink: { server: Server; url: string; received: Checkpoint[] };
let firstAt: number;

const env = () => ({ DATABASE_URL: db.url, CYNODE_LOG_LEVEL: 'silent' });
const verify = (...args: string[]) => runCli(['audit', 'verify', ...args], env());
const q = async <T>(sql: string, params: unknown[] = []) => (await superuser.query(sql, params)).rows as T[];
const newestSeq = async () => Number((await q<{ seq: string }>('select max(seq) as seq from decision_log'))[0]!.seq);
/** Runs `sql` with the append-only triggers of the decision log and the checkpoints off, as a superuser can. */
const behindTriggers = async (sql: string, params: unknown[] = []) => {
  await superuser.query('ALTER TABLE decision_log DISABLE TRIGGER decision_log_append_only');
  await superuser.query('ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_guard');
  try {
    await superuser.query(sql, params);
  } finally {
    await superuser.query('ALTER TABLE decision_log ENABLE TRIGGER decision_log_append_only');
    await superuser.query('ALTER TABLE audit_checkpoints ENABLE TRIGGER audit_checkpoints_guard');
  }
};

/** Boots a gateway on the shared database with `sinkTarget`, registers `workers` workers (a decision each), and stops it. */
async function runGateway(sinkTarget: string, workers: number): Promise<void> {
  const gw: BootedGateway = await bootGateway({
    database: db,
    roles: ['control'],
    env: { CYNODE_AUDIT_CHECKPOINT_SINK: sinkTarget, CYNODE_AUDIT_CHECKPOINT_INTERVAL_MS: '0' },
  });
  try {
    const psk = (await createPsk(gw.url())).secret;
    for (let i = 0; i < workers; i++) await registerWorker(gw.url(), psk, { node_id: `cp-${randomUUID().slice(0, 8)}` });
  } finally {
    await gw.stop();
  }
}

test.before(async () => {
  db = await createTestDatabase();
  sinkFile = join(tempDir('cynode-checkpoints-'), 'checkpoints.jsonl');
  const received: Checkpoint[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => (body += c));
    req.on('end', () => {
      if (req.method === 'POST') received.push(...(JSON.parse(body) as { checkpoints: Checkpoint[] }).checkpoints);
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(req.method === 'POST' ? '{}' : received.map((c) => JSON.stringify(c)).join('\n'));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  sink = { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/checkpoints`, received };
  await runGateway(sinkFile, 5);
  firstAt = Date.now();
  await new Promise((r) => setTimeout(r, 50));
  await runGateway(sink.url, 5);
  superuser = new pg.Client({ connectionString: db.url });
  await superuser.connect();
});

test.after.always(async () => {
  await superuser?.end();
  sink?.server.close();
  await db?.drop();
});

test.serial('a checkpoint of each chain is written on shutdown, to the file sink, the HTTP sink and PostgreSQL, signed', async (t) => {
  const lines = readFileSync(sinkFile, 'utf8').trim().split('\n');
  const fromFile = lines.map((l) => JSON.parse(l) as Checkpoint);
  t.deepEqual(
    fromFile.map((c) => c.chain),
    ['decision_log'],
    'only non-empty chains are checkpointed',
  );
  t.is(sink.received.length, 1, 'the second gateway POSTed its checkpoint');
  const [first, second] = [fromFile[0]!, sink.received[0]!];
  t.true(Number(second.seq) > Number(first.seq));
  t.is(Number(second.seq), await newestSeq(), 'the shutdown checkpoint covers the last row written');
  const head = (await q<{ hash: string }>('select hash from decision_log where seq = $1', [second.seq]))[0]!;
  t.is(second.hash, head.hash);
  for (const cp of [first, second]) t.true(await checkpointSignatureValid(cp), `checkpoint ${cp.seq} is signed`);
  t.false(await checkpointSignatureValid({ ...first, seq: second.seq }), 'a checkpoint moved to another seq fails its signature');
  t.is((await q('select 1 from audit_checkpoints')).length, 2);
  for (const source of [sinkFile, sink.url]) {
    const ok = await verify('--checkpoints', source);
    t.is(ok.code, 0, ok.stdout + ok.stderr);
    t.regex(ok.stdout, /decision log: \d+ rows, hash chain intact/);
    t.regex(ok.stdout, /decision log: 2 checkpoints agree/);
  }
});

test.serial('audit prune --before removes the rows up to the checkpoint before DATE; the rest verifies from it', async (t) => {
  const before = (await q<{ seq: string }>('select seq from decision_log order by seq')).map((r) => r.seq);
  const cut = (JSON.parse(readFileSync(sinkFile, 'utf8').trim()) as Checkpoint).seq;
  const pruned = await runCli(['audit', 'prune', '--before', new Date(firstAt).toISOString()], env());
  t.is(pruned.code, 0, pruned.stdout + pruned.stderr);
  const removed = before.filter((s) => Number(s) <= Number(cut)).length;
  t.true(pruned.stdout.includes(`decision log: pruned ${removed} rows up to seq ${cut}`), pruned.stdout);
  t.regex(pruned.stdout, /api audit: nothing to prune/);
  const after = (await q<{ seq: string }>('select seq from decision_log order by seq')).map((r) => r.seq);
  t.deepEqual(after, before.slice(removed));
  await t.throwsAsync(
    superuser.query('DELETE FROM decision_log WHERE seq = $1', [after[0]]),
    { message: /append-only/ },
    'above the cut rows stay',
  );
  for (const args of [[], ['--checkpoints', sinkFile], ['--checkpoints', sink.url]]) {
    const ok = await verify(...args);
    t.is(ok.code, 0, ok.stdout);
    t.true(ok.stdout.includes(`decision log: ${after.length} rows, hash chain intact from the prune cut at seq ${cut}`), ok.stdout);
  }
  const again = await runCli(['audit', 'prune', '--before', new Date(firstAt).toISOString()], env());
  t.regex(again.stdout, /decision log: nothing to prune/, 'a prune is idempotent');
});

test.serial('truncating the newest rows (trigger off, PostgreSQL checkpoints deleted too) is caught by verify --checkpoints', async (t) => {
  const end = await newestSeq();
  await superuser.query('CREATE TEMP TABLE saved_rows AS SELECT * FROM decision_log WHERE seq > $1', [end - 3]);
  await superuser.query('CREATE TEMP TABLE saved_checkpoints AS SELECT * FROM audit_checkpoints');
  await behindTriggers('DELETE FROM decision_log WHERE seq > $1', [end - 3]);
  await behindTriggers('DELETE FROM audit_checkpoints WHERE seq > $1', [end - 3]);
  t.teardown(async () => {
    await behindTriggers('INSERT INTO decision_log SELECT * FROM saved_rows');
    await behindTriggers(
      'INSERT INTO audit_checkpoints SELECT * FROM saved_checkpoints s WHERE NOT EXISTS (SELECT 1 FROM audit_checkpoints c WHERE c.id = s.id)',
    );
    await superuser.query('DROP TABLE saved_rows, saved_checkpoints');
  });
  const blind = await verify();
  t.is(blind.code, 0, 'without the sink the shortened chain still links up: this is what checkpoints are for');
  const caught = await verify('--checkpoints', sink.url);
  t.is(caught.code, 1, caught.stdout);
  t.true(
    caught.stdout.includes(
      `decision log: truncated: the checkpoint of ${sink.received[0]!.at} names seq ${end}, the chain ends at seq ${end - 3}`,
    ),
    caught.stdout,
  );
});

test.serial('a rewritten end of the chain (rows re-appended at the same seqs) is caught: the checkpoint hash differs', async (t) => {
  const end = await newestSeq();
  t.is((await verify('--checkpoints', sink.url)).code, 0, 'whole again');
  await superuser.query('CREATE TEMP TABLE saved_rows AS SELECT * FROM decision_log WHERE seq > $1', [end - 2]);
  // A superuser deletes the last two decisions and writes two new ones, properly chained, at the same seqs.
  await behindTriggers('DELETE FROM decision_log WHERE seq > $1', [end - 2]);
  await superuser.query(`SELECT setval('decision_log_seq_seq', $1)`, [end - 2]);
  await runGateway(join(tempDir('cynode-forged-'), 'sink.jsonl'), 3);
  await behindTriggers('DELETE FROM audit_checkpoints WHERE seq >= $1', [end - 2]);
  t.true((await newestSeq()) >= end);
  const blind = await verify();
  t.is(blind.code, 0, 'the forged rows chain up');
  const caught = await verify('--checkpoints', sink.url);
  t.is(caught.code, 1, caught.stdout);
  t.true(caught.stdout.includes(`decision log: rewritten at seq ${end}: its hash differs from the checkpoint`), caught.stdout);
});

test.serial('the egress reaper prunes finished reservations and refused attempts past their retention, never held ones', async (t) => {
  const store = await openDatabase(testConfig({ DATABASE_URL: db.url }).database, pino({ level: 'silent' }));
  t.teardown(() => store.close());
  const old = new Date(Date.now() - RESERVATION_RETENTION_MS - 60_000);
  const rows = [
    { state: 'settled', created_at: old },
    { state: 'refused', created_at: old },
    { state: 'expired', created_at: old },
    { state: 'held', created_at: old },
    { state: 'settled', created_at: new Date() },
  ].map((r) => ({
    ...r,
    call_id: randomUUID(),
    holds: '[]',
    counters: '[]',
    amount_micros: 0,
    expires_at: new Date(Date.now() + 3_600_000),
  }));
  await store.knex('budget_reservations').insert(rows);
  await createLedger({ knex: store.knex }).reap();
  const left = (await store
    .knex('budget_reservations')
    .whereIn(
      'call_id',
      rows.map((r) => r.call_id),
    )
    .select('call_id')) as { call_id: string }[];
  t.deepEqual(new Set(left.map((r) => r.call_id)), new Set([rows[3]!.call_id, rows[4]!.call_id]));
});
