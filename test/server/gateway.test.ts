import test from 'ava';
import pino from 'pino';
import { startGateway, type Gateway } from '../../src/main.js';
import { ROLES } from '../../src/server/roles.js';
import { ensureBundle } from '../helpers/bundle.js';
import { embeddedDataDir, testConfig } from '../helpers/config.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const logger = pino({ level: 'silent' });
let pgDb: TestDatabase;
const running: Gateway[] = [];

test.before(async () => {
  await ensureBundle();
  pgDb = await createTestDatabase();
});
test.after.always(async () => {
  await Promise.all(running.map((g) => g.stop()));
  await pgDb?.drop();
});

async function start(env: Record<string, string>): Promise<{ gateway: Gateway; url: (role?: string) => string }> {
  const gateway = await startGateway({ config: testConfig(env), logger, roles: ROLES });
  running.push(gateway);
  const url = (role = 'control') => `http://127.0.0.1:${gateway.listening.find((l) => l.role === role)!.port}`;
  return { gateway, url };
}

/** The JSON bodies these routes answer with, loosely typed for assertions. */
interface Body {
  status?: string;
  role?: string;
  error: { code: string; message: string };
  database: { ok: boolean; kind: string };
  bundle: { ok: boolean; revision?: string; digest?: string; lastError: { code: string } };
}

async function get(url: string, init?: RequestInit): Promise<{ status: number; body: Body }> {
  const res = await fetch(url, init);
  return { status: res.status, body: (await res.json()) as Body };
}

for (const [kind, env] of [
  ['PostgreSQL', async () => ({ DATABASE_URL: pgDb.url })],
  ['embedded', async () => ({ CYNODE_DATA_DIR: await embeddedDataDir() })],
] as const) {
  test.serial(`${kind}: every role is ready with the bundle revision`, async (t) => {
    const { url } = await start(await env());
    for (const role of ROLES) {
      const ready = await get(`${url(role)}/readyz`);
      t.is(ready.status, 200, role);
      t.is(ready.body.status, 'ready');
      t.is(ready.body.role, role);
      t.is(ready.body.bundle.revision, 'test-suite');
      t.regex(ready.body.bundle.digest ?? '', /^[0-9a-f]{64}$/);
      t.deepEqual(ready.body.database, { ok: true, kind: kind === 'embedded' ? 'embedded' : 'postgres' });
      const live = await get(`${url(role)}/healthz`);
      t.is(live.status, 200);
      t.deepEqual(live.body as unknown, { status: 'ok', role });
    }
  });
}

test.serial('unknown paths and methods answer in the stable error shape', async (t) => {
  const { url } = await start({ DATABASE_URL: pgDb.url });
  const missing = await get(`${url()}/v1/nothing`);
  t.is(missing.status, 404);
  t.is(missing.body.error.code, 'not_found');
  t.is(typeof missing.body.error.message, 'string');
  const wrongMethod = await get(`${url()}/readyz`, { method: 'POST' });
  t.is(wrongMethod.status, 405);
  t.is(wrongMethod.body.error.code, 'method_not_allowed');
  const res = await fetch(`${url()}/healthz`, { headers: { 'x-request-id': 'trace-123' } });
  t.is(res.headers.get('x-request-id'), 'trace-123');
  const generated = await fetch(`${url()}/healthz`, { headers: { 'x-request-id': 'bad id with spaces' } });
  t.regex(generated.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
});

test.serial('no loadable bundle: /readyz is 503 bundle_unavailable with the reason', async (t) => {
  const { url, gateway } = await start({ DATABASE_URL: pgDb.url, CYNODE_BUNDLE: '/nonexistent/bundle.tar.gz' });
  const ready = await get(`${url('egress')}/readyz`);
  t.is(ready.status, 503);
  t.is(ready.body.status, 'not_ready');
  t.is(ready.body.error.code, 'bundle_unavailable');
  t.regex(ready.body.error.message, /cannot read bundle.*ENOENT/);
  t.is(ready.body.bundle.ok, false);
  t.is(ready.body.bundle.lastError.code, 'bundle_unreadable');
  t.true(ready.body.database.ok);
  t.is(gateway.policy.status().active, undefined);
});

test.serial('database cut off: /readyz turns 503 database_unavailable, then recovers by itself', async (t) => {
  const proxy: TcpProxy = await startTcpProxy('127.0.0.1', 5432);
  t.teardown(() => proxy.close());
  const viaProxy = new URL(pgDb.url);
  viaProxy.port = String(proxy.port);
  viaProxy.password = 'not-a-real-secret';
  const { url } = await start({
    DATABASE_URL: viaProxy.toString(),
    CYNODE_READY_CHECK_TIMEOUT_MS: '500',
    CYNODE_DATABASE_CONNECT_TIMEOUT_MS: '500',
  });
  t.is((await get(`${url()}/readyz`)).status, 200);

  proxy.cut();
  const down = await get(`${url()}/readyz`);
  t.is(down.status, 503);
  t.is(down.body.error.code, 'database_unavailable');
  t.false(down.body.database.ok);
  t.true(down.body.bundle.ok, 'the bundle is still fine');
  t.false(JSON.stringify(down.body).includes('not-a-real-secret'));
  t.is((await get(`${url()}/healthz`)).status, 200, 'liveness does not depend on the database');

  proxy.restore();
  let status = 0;
  for (let i = 0; i < 20 && status !== 200; i++) {
    status = (await get(`${url()}/readyz`)).status;
    if (status !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  t.is(status, 200);
});

test.serial('a port already in use is a clear startup error and nothing is left running', async (t) => {
  const { gateway } = await start({ DATABASE_URL: pgDb.url });
  const taken = String(gateway.listening[0]!.port);
  const err = await t.throwsAsync(() =>
    startGateway({ config: testConfig({ DATABASE_URL: pgDb.url, CYNODE_MCP_PORT: taken }), logger, roles: ROLES }),
  );
  t.is(err!.name, 'StartupError');
  t.regex(err!.message, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken} for the mcp role: EADDRINUSE`));
});

test.serial('stop drains and closes: the ports refuse connections afterwards', async (t) => {
  const { gateway, url } = await start({ DATABASE_URL: pgDb.url });
  const control = url();
  t.is((await get(`${control}/healthz`)).status, 200);
  await gateway.stop();
  await t.throwsAsync(() => fetch(`${control}/healthz`));
  await gateway.stop(); // idempotent
});
