import { randomBytes, randomUUID } from 'node:crypto';
import test from 'ava';
import pino from 'pino';
import { signForwardToken } from '../../src/final-gate/index.js';
import { ENTRYPOINTS } from '../../src/policy/index.js';
import { ROUTE_TABLE, type RouteEntry } from '../../src/routes.js';
import { createRoleApp } from '../../src/server/app.js';
import { createLifecycle } from '../../src/server/lifecycle.js';
import type { Access, BoundRoute } from '../../src/server/route.js';
import { startServers } from '../../src/server/serve.js';
import { ensureBundle } from '../helpers/bundle.js';
import { TEST_ADMIN_TOKEN, testConfig } from '../helpers/config.js';
import { SEED_WORKER } from '../helpers/fixtures.js';
import { call, eventually } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { startTestGateway, type TestGateway } from '../helpers/start.js';

/** The kinds of credential a caller can hold; each access kind accepts some of them. */
type Credential = 'admin' | 'reader' | 'bundleReader' | 'metrics' | 'worker' | 'agent' | 'psk' | 'forward';
const CREDENTIALS: readonly Credential[] = ['admin', 'reader', 'bundleReader', 'metrics', 'worker', 'agent', 'psk', 'forward'];
const ACCEPTS: Record<Exclude<Access, 'public'>, readonly Credential[]> = {
  admin: ['admin'],
  reader: ['admin', 'reader'],
  bundleReader: ['admin', 'bundleReader'],
  // With auth.metricsToken set, as here; without one `metrics` routes are public (test/server/metrics-access.test.ts).
  metrics: ['admin', 'metrics'],
  worker: ['worker'],
  agent: ['worker', 'agent'],
  // The worker's JWT is a key too; without X-Cynode-Job-Id it is then refused job_not_leased.
  modelKey: ['agent', 'worker'],
  workerOrAdmin: ['worker', 'admin'],
  psk: ['psk'],
  forward: ['forward'],
};
/** The codes that mean "stopped at authentication": a request answered with none of these got past it. */
const AUTH_CODES = [
  'unauthorized',
  'forbidden',
  'token_invalid',
  'token_expired',
  'session_replaced',
  'psk_invalid',
  'forward_token_invalid',
];

const BUNDLE_READER_TOKEN = `bundle-reader-${randomBytes(16).toString('hex')}`;
const READER_TOKEN = `reader-${randomBytes(16).toString('hex')}`;
const METRICS_TOKEN = `metrics-${randomBytes(16).toString('hex')}`;
let db: TestDatabase;
let gw: TestGateway;
const held = {} as Record<Credential, string>;

test.before(async () => {
  await ensureBundle();
  db = await createTestDatabase();
  gw = await startTestGateway({
    DATABASE_URL: db.url,
    CYNODE_BUNDLE_SERVICE_TOKEN: BUNDLE_READER_TOKEN,
    CYNODE_READER_TOKEN: READER_TOKEN,
    CYNODE_METRICS_TOKEN: METRICS_TOKEN,
    CYNODE_PSK_FAILURE_LIMIT: '10000',
  });
  const control = gw.url('control');
  const psk = await call(control, '/v1/psks', { json: { name: 'route-table' } });
  held.psk = String(psk.body.secret);
  const registered = await call(control, '/register', { token: null, headers: { 'x-cynode-psk': held.psk }, json: SEED_WORKER });
  held.worker = String(registered.body.token);
  await call(control, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  const job = await call(control, '/v1/jobs', {
    headers: { 'idempotency-key': randomUUID() },
    json: { task_id: 'task-rt', user_id: 'user-rt', requirements: { labels: ['cloud'] }, payload: { kind: 'echo', input: 'x' } },
  });
  await eventually(
    async () => ((await call(control, '/jobs/poll', { token: held.worker, json: {} })).body.jobs as unknown[]).length > 0,
    10_000,
  );
  const agent = await call(control, '/v1/agent-tokens', { token: held.worker, json: { agent_type: 'sandbox', job_id: job.body.id } });
  held.agent = String(agent.body.token);
  held.admin = TEST_ADMIN_TOKEN;
  held.bundleReader = BUNDLE_READER_TOKEN;
  held.reader = READER_TOKEN;
  held.metrics = METRICS_TOKEN;
  held.forward = 'signed per request';
});
test.after.always(async () => {
  await gw?.gateway.stop();
  await db?.drop();
});

const samplePath = (path: string) =>
  path
    .replace('/console/assets/{path}', '/console/assets/app.js')
    .replace('{path}', 'cynode/register/decision')
    .replace('{name}', 'cynode')
    .replace(/\{\w+\}/g, 'x');

/** Sends one request to `route` on `role`, presenting `credential` the way its kind travels. */
async function attempt(route: RouteEntry, role: RouteEntry['roles'][number], credential: Credential | null) {
  const body = route.path === '/console/session' ? JSON.stringify({ token: held.admin }) : '{}';
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (credential === 'psk') headers['x-cynode-psk'] = held.psk;
  if (credential === 'forward') {
    const input = { action: 'api.call', subject: { kind: 'orchestrator', id: 'admin', labels: [] }, resource: {}, context: {} };
    const claims = {
      issuer: 'cynode-gateway',
      audience: 'cynode-egress',
      subject: 'orchestrator:admin',
      entrypoint: ENTRYPOINTS.apiCall,
      input,
      revision: 'route-table',
    };
    headers['x-cynode-forward-token'] = await signForwardToken(gw.gateway.keys.current(), claims, body, 10_000);
  }
  const token = credential && credential !== 'psk' && credential !== 'forward' ? held[credential] : null;
  const method = route.method.toUpperCase();
  return call(gw.url(role), samplePath(route.path), { method, token, headers, ...(method !== 'GET' && method !== 'DELETE' && { body }) });
}
// The drop-in Anthropic API answers in Anthropic's shape, its stable code as the error's `type`.
const codeOf = (body: unknown) => {
  const b = body as { type?: string; error?: { code?: string; type?: string } } | null;
  return b?.type === 'error' ? b.error?.type : b?.error?.code;
};

test('every non-public route answers 401 without credentials, refuses every other kind, and lets its own kind through, on every role that serves it', async (t) => {
  let checked = 0;
  for (const route of ROUTE_TABLE.filter((r) => r.access !== 'public')) {
    const accepted = ACCEPTS[route.access as Exclude<Access, 'public'>];
    for (const role of route.roles) {
      const name = `${role} ${route.method.toUpperCase()} ${route.path}`;
      const none = await attempt(route, role, null);
      t.is(none.status, 401, `${name} without credentials: ${JSON.stringify(none.body)}`);
      t.true(AUTH_CODES.includes(String(codeOf(none.body))), `${name} without credentials: ${codeOf(none.body)}`);
      for (const credential of CREDENTIALS) {
        const res = await attempt(route, role, credential);
        const code = String(codeOf(res.body));
        if (accepted.includes(credential)) {
          t.false(AUTH_CODES.includes(code), `${name} with its own kind (${credential}) was stopped: ${res.status} ${code}`);
        } else {
          t.true([401, 403].includes(res.status) && AUTH_CODES.includes(code), `${name} with ${credential}: ${res.status} ${code}`);
          // A token the gateway knows but that lacks the right is forbidden, not unknown.
          if (['admin', 'reader'].includes(route.access) && ['bundleReader', 'reader'].includes(credential))
            t.is(res.status, 403, `${name} with the ${credential} token`);
        }
        checked++;
      }
    }
  }
  t.log(`${checked} attempts over ${ROUTE_TABLE.filter((r) => r.access !== 'public').length} non-public routes`);
  t.true(checked > 200);
});

test('public routes answer without credentials on every role that serves them', async (t) => {
  for (const route of ROUTE_TABLE.filter((r) => r.access === 'public' && r.method !== 'all')) {
    for (const role of route.roles) {
      const res = await attempt(route, role, null);
      t.true(res.status < 400, `${role} ${route.path}: ${res.status}`);
    }
  }
});

const quietLogger = pino({ level: 'silent' });
const stray = (over: Partial<BoundRoute>): BoundRoute => ({
  method: 'get',
  path: '/v1/stray',
  roles: ['control'],
  access: 'admin',
  summary: 'x',
  ok: {},
  errors: [],
  handle: () => undefined,
  ...over,
});

test('a route without an access kind, or with one no part authenticates, stops the gateway from starting', (t) => {
  const deps = { logger: quietLogger, maxBodyBytes: 1024, authenticators: {} as never };
  const missing = stray({ access: undefined as unknown as Access });
  t.throws(() => createRoleApp('control', { ...deps, routes: [missing] }), { name: 'StartupError', message: /names no access kind/ });
  t.throws(() => createRoleApp('control', { ...deps, routes: [stray({ access: 'everyone' as Access })] }), {
    name: 'StartupError',
    message: /names no access kind/,
  });
  t.throws(() => createRoleApp('control', { ...deps, routes: [stray({ access: 'admin' })] }), {
    name: 'StartupError',
    message: /needs the 'admin' authenticator/,
  });
  t.notThrows(() => createRoleApp('control', { ...deps, routes: [stray({ access: 'public' })] }));
});

test('a route a module serves that is missing from the route table, or a table route nobody serves, stops the start', async (t) => {
  const options = {
    config: testConfig({}),
    logger: quietLogger,
    roles: ['control'] as const,
    authenticators: {} as never,
    beforeDrain: [],
  };
  const life = createLifecycle(quietLogger);
  await t.throwsAsync(startServers({ ...options, table: [], routes: [stray({ access: 'public' })] }, life), {
    name: 'StartupError',
    message: /missing from the route table: GET \/v1\/stray/,
  });
  const { handle: _handle, ...entry } = stray({ access: 'public' });
  await t.throwsAsync(startServers({ ...options, table: [entry], routes: [] }, life), {
    name: 'StartupError',
    message: /that no module serves: GET \/v1\/stray/,
  });
  await life.stopAll();
});
