import { randomBytes } from 'node:crypto';
import test from 'ava';
import { TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { ensureBundle } from '../helpers/bundle.js';
import { runCli, startGatewayProcess, type GatewayProcess } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { SEED_WORKER } from '../helpers/fixtures.js';
import { register } from '../helpers/workers.js';

const MASTER = randomBytes(32).toString('base64');
const NEXT_MASTER = randomBytes(32).toString('base64');
const PROVIDER_KEY = `sk-live-${randomBytes(20).toString('hex')}`;

let db: TestDatabase;
let gw: GatewayProcess;
let url: string;

test.before(async () => {
  db = await createTestDatabase();
  gw = await startGatewayProcess({ CYNODE_BUNDLE: await ensureBundle(), DATABASE_URL: db.url, CYNODE_MASTER_KEY: MASTER });
  url = `http://127.0.0.1:${gw.ports.control}`;
});
test.after.always(async () => {
  gw?.child.kill('SIGTERM');
  await gw?.exited;
  await db?.drop();
});

const cli = (...args: string[]) => runCli([...args, '--url', url], { CYNODE_ADMIN_TOKEN: TEST_ADMIN_TOKEN, CYNODE_LOG_LEVEL: 'warn' });
const cliIn = (stdin: string, ...args: string[]) =>
  runCli([...args, '--url', url], { CYNODE_ADMIN_TOKEN: TEST_ADMIN_TOKEN, CYNODE_LOG_LEVEL: 'warn' }, stdin);

test.serial('psk create shows the secret once; list shows metadata only; revoke stops it', async (t) => {
  const created = await cli('psk', 'create', '--name', 'fleet-a');
  t.is(created.code, 0, created.stderr);
  const psk = JSON.parse(created.stdout) as { id: string; secret: string; active: boolean };
  t.true(psk.active);
  t.regex(psk.secret, /^cynpsk_[a-z0-9]{12}_[\w-]{43}$/);
  t.regex(created.stderr, /shown this once/);
  t.is((await register(url, psk.secret, { ...SEED_WORKER, max_concurrency: 1 })).status, 200);

  const listed = await cli('psk', 'list');
  t.is(listed.code, 0);
  t.true(listed.stdout.includes(psk.id));
  t.false(listed.stdout.includes(psk.secret.slice(-43)), 'no secret in the list');

  const revoked = await cli('psk', 'revoke', psk.id);
  t.is(revoked.code, 0);
  t.false((JSON.parse(revoked.stdout) as { active: boolean }).active);
  t.is((await register(url, psk.secret, { ...SEED_WORKER, node_id: 'cli-2', max_concurrency: 1 })).status, 401);
  const unknown = await cli('psk', 'revoke', 'nope');
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /psk_not_found/);
});

test.serial('psk create --node-id-pattern --labels --regions makes a scoped PSK that registers only its fleet', async (t) => {
  const created = await cli(
    'psk',
    'create',
    '--name',
    'fleet-b',
    '--node-id-pattern',
    'fleet-b-*',
    '--labels',
    'cloud, gpu',
    '--regions',
    'us-east-1',
  );
  t.is(created.code, 0, created.stderr);
  const psk = JSON.parse(created.stdout) as { secret: string; constraints: unknown };
  t.deepEqual(psk.constraints, { node_id_pattern: 'fleet-b-*', allowed_labels: ['cloud', 'gpu'], regions: ['us-east-1'] });
  const worker = { ...SEED_WORKER, max_concurrency: 1, labels: ['cloud'], region: 'us-east-1' };
  const mine = await register(url, psk.secret, { ...worker, node_id: 'fleet-b-01' });
  t.is(mine.status, 200, JSON.stringify(mine.body));
  const other = await register(url, psk.secret, { ...worker, node_id: 'fleet-a-01' });
  t.is(other.status, 403, "another fleet's node id is refused");
  const bad = await cli('psk', 'create', '--name', 'fleet-c', '--node-id-pattern', 'fleet c (*');
  t.is(bad.code, 1);
  t.regex(bad.stderr, /bad_request: constraints: node_id_pattern/);
});

test.serial('keys rotate starts a new signing key and keeps the old one published', async (t) => {
  const before = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
  const rotated = await cli('keys', 'rotate');
  t.is(rotated.code, 0, rotated.stderr);
  const { kid, keys } = JSON.parse(rotated.stdout) as { kid: string; keys: string[] };
  t.false(before.keys.some((k) => k.kid === kid));
  t.true(
    before.keys.every((k) => keys.includes(k.kid)),
    'the old keys still verify',
  );
});

test.serial('admin commands fail clearly: usage, a wrong token, an unreachable gateway', async (t) => {
  t.is((await cli('psk', 'create')).code, 2);
  t.is((await cli('keys', 'spin')).code, 2);
  const wrong = await runCli(['psk', 'list', '--url', url], { CYNODE_ADMIN_TOKEN: 'not-the-admin-token-at-all' });
  t.is(wrong.code, 1);
  t.regex(wrong.stderr, /unauthorized/);
  t.false(wrong.stderr.includes('not-the-admin-token-at-all'));
  const down = await runCli(['psk', 'list', '--url', 'http://127.0.0.1:1'], { CYNODE_ADMIN_TOKEN: TEST_ADMIN_TOKEN });
  t.is(down.code, 1);
  t.regex(down.stderr, /cannot reach the gateway/);
});

test.serial('credentials add, list, rotate and disable: the secret goes in on stdin and never comes out', async (t) => {
  const added = await cliIn(`${PROVIDER_KEY}\n`, 'credentials', 'add', '--provider', 'openai', '--name', 'prod', '--owner-group', 'ml');
  t.is(added.code, 0, added.stderr);
  const { id, version } = JSON.parse(added.stdout) as { id: string; version: number };
  t.is(version, 1);
  const listed = await cli('credentials', 'list');
  t.true(listed.stdout.includes(id));
  const rotated = await cliIn(`${PROVIDER_KEY}-2\n`, 'credentials', 'rotate', id);
  t.is((JSON.parse(rotated.stdout) as { version: number }).version, 2);
  const disabled = await cli('credentials', 'disable', id);
  t.false((JSON.parse(disabled.stdout) as { active: boolean }).active);
  t.is((await cli('credentials', 'add', '--provider', 'openai')).code, 2);
  for (const r of [added, listed, rotated, disabled]) t.false((r.stdout + r.stderr).includes(PROVIDER_KEY));
});

test.serial('credentials rewrap moves every credential under a new master key, on the database', async (t) => {
  const env = { DATABASE_URL: db.url, CYNODE_LOG_LEVEL: 'warn' };
  const run = await runCli(['credentials', 'rewrap'], { ...env, CYNODE_MASTER_KEY: NEXT_MASTER, CYNODE_MASTER_KEY_PREVIOUS: MASTER });
  t.is(run.code, 0, run.stderr);
  t.is((JSON.parse(run.stdout) as { rewrapped: number }).rewrapped, 1);
  const again = await runCli(['credentials', 'rewrap'], { ...env, CYNODE_MASTER_KEY: NEXT_MASTER });
  t.is((JSON.parse(again.stdout) as { rewrapped: number }).rewrapped, 0);
  const wrongKey = await runCli(['credentials', 'rewrap'], { ...env, CYNODE_MASTER_KEY: 'not-base64-32-bytes' });
  t.is(wrongKey.code, 1);
  t.regex(wrongKey.stderr, /master key must be 32 bytes/);
  t.false((run.stdout + run.stderr + wrongKey.stderr).includes(MASTER) || (run.stdout + run.stderr).includes(NEXT_MASTER));
});
