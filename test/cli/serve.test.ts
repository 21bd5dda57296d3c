import { readFileSync, writeFileSync } from 'node:fs';
import test from 'ava';
import { parseBundle } from '../../src/policy/index.js';
import { ensureBundle } from '../helpers/bundle.js';
import { embeddedDataDir, tempDir } from '../helpers/config.js';
import { runCli, startGatewayProcess } from '../helpers/gateway.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { tarFromFiles } from '../helpers/tar-writer.js';

let pgDb: TestDatabase;
let bundle: string;

test.before(async () => {
  bundle = await ensureBundle();
  pgDb = await createTestDatabase();
});
test.after.always(async () => {
  await pgDb?.drop();
});

for (const [kind, env] of [
  ['embedded', async () => ({ CYNODE_DATA_DIR: await embeddedDataDir() })],
  ['PostgreSQL', async () => ({ DATABASE_URL: pgDb.url })],
] as const) {
  test.serial(`serve on ${kind}: ready with the revision, SIGTERM exits 0 after draining`, async (t) => {
    const gw = await startGatewayProcess({ CYNODE_BUNDLE: bundle, ...(await env()) });
    t.deepEqual(Object.keys(gw.ports).sort(), ['control', 'egress', 'mcp']);
    const res = await fetch(`http://127.0.0.1:${gw.ports.control}/readyz`);
    t.is(res.status, 200);
    t.is(((await res.json()) as { bundle: { revision: string } }).bundle.revision, 'test-suite');

    gw.child.kill('SIGTERM');
    t.is(await gw.exited, 0);
    const lines = gw
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; level: string });
    const messages = lines.map((l) => l.msg);
    t.true(messages.includes('gateway ready'));
    t.true(messages.indexOf('shutting down') < messages.indexOf('shutdown complete'));
    t.true(
      lines.every((l) => typeof l.level === 'string'),
      'every line is pino JSON',
    );
  });
}

test.serial('serve --role egress runs only that role', async (t) => {
  const gw = await startGatewayProcess({ CYNODE_BUNDLE: bundle, DATABASE_URL: pgDb.url }, ['--role', 'egress']);
  t.deepEqual(Object.keys(gw.ports), ['egress']);
  const res = await fetch(`http://127.0.0.1:${gw.ports.egress}/readyz`);
  t.is(((await res.json()) as { role: string }).role, 'egress');
  gw.child.kill('SIGINT');
  t.is(await gw.exited, 0);
});

test.serial('an unknown role is a usage error', async (t) => {
  const { code, stderr } = await runCli(['serve', '--role', 'admin']);
  t.is(code, 2);
  t.regex(stderr, /unknown role 'admin'/);
});

test.serial('an unreachable database at start exits 1 with a clear message and no password', async (t) => {
  const { code, stdout, stderr } = await runCli(['serve'], {
    DATABASE_URL: 'postgres://gw:hunter2-secret@127.0.0.1:1/gw',
    CYNODE_DATABASE_STARTUP_TIMEOUT_MS: '600',
    CYNODE_DATABASE_CONNECT_TIMEOUT_MS: '200',
    CYNODE_CONTROL_PORT: '0',
    CYNODE_MCP_PORT: '0',
    CYNODE_EGRESS_PORT: '0',
  });
  t.is(code, 1);
  t.regex(stderr, /cannot start: database postgres:\/\/gw:\*\*\*@127\.0\.0\.1:1\/gw unreachable after \d+ attempt/);
  t.false((stdout + stderr).includes('hunter2-secret'));
  t.notRegex(stderr, /\n\s+at /);
});

test.serial('migrate up, status and down through the CLI', async (t) => {
  const fresh = await createTestDatabase();
  t.teardown(() => fresh.drop());
  const env = { DATABASE_URL: fresh.url, CYNODE_LOG_LEVEL: 'silent' };
  const before = await runCli(['migrate', 'status'], env);
  t.is(before.code, 0, before.stderr);
  t.regex(before.stdout, /^pending\s+\d{14}_create_settings$/m);
  const up = await runCli(['migrate'], env);
  t.is(up.code, 0, up.stderr);
  t.regex(up.stdout, /at the latest migration/);
  t.regex((await runCli(['migrate', 'status'], env)).stdout, /^applied\s+\d{14}_create_settings$/m);
  const down = await runCli(['migrate', 'down', '--all'], env);
  t.regex(down.stdout, /reverted: .*\d{14}_create_decision_log.*\d{14}_create_settings/);
  t.regex((await runCli(['migrate', 'status'], env)).stdout, /^pending/m);
  const bad = await runCli(['migrate', 'sideways'], env);
  t.is(bad.code, 2);
});

test.serial('the default path is signed: policy build creates a key, serve verifies it and refuses a tampered bundle', async (t) => {
  const dir = tempDir('cynode-signed-');
  const env = {
    CYNODE_BUNDLE_SIGNING_KEY_FILE: `${dir}/signing.pem`,
    CYNODE_BUNDLE_VERIFICATION_KEYS_FILE: `${dir}/keys.yaml`,
    CYNODE_BUNDLE: `${dir}/bundle.tar.gz`,
  };
  const built = await runCli(['policy', 'build'], env);
  t.is(built.code, 0, built.stderr);
  t.regex(built.stderr, /created a local bundle signing key/);
  t.regex(built.stderr, /signed by key 'cynode-local'/);

  const gw = await startGatewayProcess({ ...env, DATABASE_URL: pgDb.url, CYNODE_POLICY_ALLOW_UNSIGNED: 'false' });
  const ready = await fetch(`http://127.0.0.1:${gw.ports.control}/readyz`);
  t.is(ready.status, 200);
  gw.child.kill('SIGTERM');
  t.is(await gw.exited, 0);

  const files = new Map(parseBundle(readFileSync(env.CYNODE_BUNDLE)).files);
  files.set('data.json', Buffer.from('{"config":{"register":{"admission":{"labels":{"cloud":true}}}}}'));
  writeFileSync(env.CYNODE_BUNDLE, tarFromFiles(files));
  const tampered = await startGatewayProcess({ ...env, DATABASE_URL: pgDb.url, CYNODE_POLICY_ALLOW_UNSIGNED: 'false' });
  const refused = (await (await fetch(`http://127.0.0.1:${tampered.ports.control}/readyz`)).json()) as {
    bundle: { lastError: { code: string } };
  };
  t.is(refused.bundle.lastError.code, 'signature_hash_mismatch');
  tampered.child.kill('SIGTERM');
  t.is(await tampered.exited, 0);
});
