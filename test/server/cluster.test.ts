import test from 'ava';
import pg from 'pg';
import { ensureBundle } from '../helpers/bundle.js';
import { embeddedDataDir, TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { type GatewayProcess, runCli, startGatewayProcess } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

let db: TestDatabase;
let bundle: string;

test.before(async () => {
  bundle = await ensureBundle();
  db = await createTestDatabase();
});
test.after.always(async () => {
  await db?.drop();
});

interface Line {
  msg: string;
  pid: number;
  workers?: number;
}

const lines = (gw: GatewayProcess): Line[] =>
  gw
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);

async function decide(port: number): Promise<string> {
  // A new connection per request, so the primary hands them to the workers in turn.
  const res = await fetch(`http://127.0.0.1:${port}/v1/data/cynode/register/decision`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json', connection: 'close' },
    body: JSON.stringify({ input: { action: 'register' } }),
  });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { decision_id: string }).decision_id;
}

async function count(sql: string): Promise<number> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    return Number((await client.query<{ n: string }>(sql)).rows[0]!.n);
  } finally {
    await client.end();
  }
}

test.serial('serve --workers 2: one ready line, both workers decide, every decision chained, SIGTERM drains both', async (t) => {
  const gw = await startGatewayProcess({ CYNODE_BUNDLE: bundle, DATABASE_URL: db.url }, ['--workers', '2']);
  // A failed assertion must not leave the gateway running (the file would never exit).
  t.teardown(() => void (gw.child.exitCode === null && gw.child.kill('SIGKILL')));
  const ready = lines(gw).filter((l) => l.msg === 'gateway ready');
  t.is(ready.length, 1);
  t.is(ready[0]!.workers, 2);
  t.is(ready[0]!.pid, gw.child.pid!);
  const workerPids = lines(gw)
    .filter((l) => l.msg === 'worker ready')
    .map((l) => l.pid);
  t.is(new Set(workerPids).size, 2);

  const ids = await Promise.all(Array.from({ length: 20 }, () => decide(gw.ports.control!)));
  gw.child.kill('SIGTERM');
  t.is(await gw.exited, 0);
  const after = lines(gw);
  t.is(after.filter((l) => l.msg === 'worker shutdown complete').length, 2);
  t.true(after.some((l) => l.msg === 'shutdown complete' && l.pid === gw.child.pid));
  // Both workers flushed what they decided, into one chain that verifies.
  t.is(await count(`select count(*) as n from decision_log where decision_id in (${ids.map((id) => `'${id}'`).join(',')})`), 20);
  const verified = await runCli(['audit', 'verify'], { DATABASE_URL: db.url, CYNODE_LOG_LEVEL: 'silent' });
  t.is(verified.code, 0, verified.stdout + verified.stderr);
});

test.serial('a worker that dies stops the whole gateway with exit 1, for its supervisor to restart', async (t) => {
  const gw = await startGatewayProcess({ CYNODE_BUNDLE: bundle, DATABASE_URL: db.url }, ['--workers', '2']);
  const [victim] = lines(gw)
    .filter((l) => l.msg === 'worker ready')
    .map((l) => l.pid);
  process.kill(victim!, 'SIGKILL');
  t.is(await gw.exited, 1);
  t.true(lines(gw).some((l) => l.msg === 'a worker ended; stopping the gateway'));
});

test.serial('--workers above 1 refuses the embedded database, and a bad count is a usage error', async (t) => {
  const embedded = await runCli(['serve', '--workers', '2'], { CYNODE_DATA_DIR: await embeddedDataDir(), CYNODE_BUNDLE: bundle });
  t.is(embedded.code, 2);
  t.regex(embedded.stderr, /--workers above 1 needs PostgreSQL/);
  const bad = await runCli(['serve', '--workers', '0'], { DATABASE_URL: db.url });
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--workers takes a whole number from 1 to 64/);
});
