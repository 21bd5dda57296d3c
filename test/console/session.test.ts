import test from 'ava';
import { createSessionStore } from '../../src/console/session.js';
import { ROUTE_TABLE } from '../../src/routes.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { buildConsole, READER_TOKEN } from './fixture.js';

let gw: BootedGateway;
let base: string;

test.before(async () => {
  buildConsole();
  gw = await bootGateway({ roles: ['control'], env: { CYNODE_READER_TOKEN: READER_TOKEN } });
  base = gw.url();
});
test.after.always(() => gw?.stop());

interface Signed {
  cookie: string;
  csrf: string;
  setCookie: string;
}
async function signIn(token: string): Promise<Signed> {
  const res = await fetch(`${base}/console/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token }),
  });
  if (res.status !== 201) throw new Error(`sign-in: ${res.status}`);
  const setCookie = res.headers.get('set-cookie')!;
  return { cookie: setCookie.split(';')[0]!, csrf: ((await res.json()) as { csrf: string }).csrf, setCookie };
}
const send = (path: string, init: { method?: string; cookie?: string; csrf?: string; body?: unknown; bearer?: string } = {}) =>
  fetch(`${base}${path}`, {
    method: init.method ?? 'GET',
    headers: {
      ...(init.cookie && { cookie: init.cookie }),
      ...(init.csrf && { 'x-cynode-csrf': init.csrf }),
      ...(init.bearer && { authorization: `Bearer ${init.bearer}` }),
      ...(init.body !== undefined && { 'content-type': 'application/json' }),
    },
    ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
  });
const codeOf = async (res: Response) => ((await res.json()) as { error?: { code: string } }).error?.code;

test.serial('sign-in takes only the admin or the read-only token and sets an HttpOnly SameSite=Strict cookie', async (t) => {
  t.is((await send('/console/session', { method: 'POST', body: { token: 'not-the-token' } })).status, 401);
  t.is((await send('/console/session', { method: 'POST', body: {} })).status, 400);
  const admin = await signIn(gw.adminToken);
  t.regex(admin.setCookie, /HttpOnly/i);
  t.regex(admin.setCookie, /SameSite=Strict/i);
  t.notRegex(admin.setCookie, /Secure/i, 'plain HTTP: no Secure flag (it is set over TLS)');
  t.false(admin.setCookie.includes(gw.adminToken), 'the cookie is a random id, not the token');
  const me = (await (await send('/console/session', { cookie: admin.cookie })).json()) as { principal: { kind: string } };
  t.is(me.principal.kind, 'admin');
  const reader = await signIn(READER_TOKEN);
  t.is(
    ((await (await send('/console/session', { cookie: reader.cookie })).json()) as { principal: { kind: string } }).principal.kind,
    'reader',
  );
});

test.serial('a session write needs its own CSRF token; a cross-site form post or another session’s token is refused', async (t) => {
  const admin = await signIn(gw.adminToken);
  const other = await signIn(gw.adminToken);
  const put = (csrf?: string) =>
    send('/v1/settings/cloud_routing.enabled', { method: 'PUT', cookie: admin.cookie, body: { value: true }, ...(csrf && { csrf }) });
  const bare = await put();
  t.is(bare.status, 403);
  t.is(await codeOf(bare), 'forbidden');
  t.is((await put(other.csrf)).status, 403);
  t.is((await put(admin.csrf)).status, 200);
  const audit = (await (await send('/v1/settings/cloud_routing.enabled', { cookie: admin.cookie })).json()) as { updatedBy: string };
  t.is(audit.updatedBy, 'admin', 'the write is the admin principal’s, as with the token');
});

test.serial('signing out ends the session; an unknown cookie is 401; a bearer token still works beside a cookie', async (t) => {
  const admin = await signIn(gw.adminToken);
  t.is((await send('/console/session', { method: 'DELETE', cookie: admin.cookie, csrf: admin.csrf })).status, 204);
  t.is((await send('/v1/status', { cookie: admin.cookie })).status, 401);
  t.is((await send('/v1/status', { cookie: 'cynode_console=made-up' })).status, 401);
  t.is((await send('/v1/status', { cookie: 'cynode_console=made-up', bearer: READER_TOKEN })).status, 200);
});

test.serial('every admin and reader route takes a console session: reader routes both, admin routes only an admin session', async (t) => {
  const admin = await signIn(gw.adminToken);
  const reader = await signIn(READER_TOKEN);
  const AUTH = ['unauthorized', 'forbidden'];
  let checked = 0;
  for (const route of ROUTE_TABLE.filter((r) => (r.access === 'admin' || r.access === 'reader') && r.roles.includes('control'))) {
    if (route.path === '/console/session') continue; // signing out would end the sessions under test
    const path = route.path.replace('{path}', 'cynode/register/decision').replace(/\{\w+\}/g, 'x');
    const method = route.method.toUpperCase();
    const body = method === 'GET' || method === 'DELETE' ? undefined : {};
    const asAdmin = await send(path, { method, cookie: admin.cookie, csrf: admin.csrf, body });
    t.false(
      asAdmin.status === 401 || (asAdmin.status === 403 && AUTH.includes((await codeOf(asAdmin)) ?? '')),
      `${method} ${route.path} as admin: ${asAdmin.status}`,
    );
    const asReader = await send(path, { method, cookie: reader.cookie, csrf: reader.csrf, body });
    if (route.access === 'admin') t.is(asReader.status, 403, `${method} ${route.path} as reader`);
    else t.not(asReader.status, 401, `${method} ${route.path} as reader`);
    checked++;
  }
  t.true(checked > 20);
});

test.serial('the console page and assets carry a strict CSP and are never framed', async (t) => {
  for (const path of ['/console', '/console/assets/app.js', '/console/assets/app.css']) {
    const res = await fetch(`${base}${path}`);
    t.is(res.status, 200, path);
    const csp = res.headers.get('content-security-policy') ?? '';
    for (const rule of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"])
      t.true(csp.includes(rule), `${path}: ${rule}`);
    t.false(csp.includes('unsafe-inline'));
    t.is(res.headers.get('x-frame-options'), 'DENY');
  }
  t.is((await fetch(`${base}/console/assets/../../package.json`)).status, 404);
  t.is((await fetch(`${base}/console/assets/nothing.js`)).status, 404);
});

test.serial('sessions expire, and the store keeps at most its limit (oldest out first)', async (t) => {
  let now = Date.parse('2030-01-01T00:00:00Z');
  const store = createSessionStore(gw.gateway.db.knex, { ttlMs: 1000, max: 2, now: () => now });
  const a = await store.open({ kind: 'admin', id: 'admin' });
  t.like(await store.find(a.id), { principal: { kind: 'admin', id: 'admin' }, csrf: a.session.csrf });
  now += 1000;
  t.is(await store.find(a.id), undefined, 'expired at its end');
  const b = await store.open({ kind: 'reader', id: 'reader' });
  now += 1;
  const c = await store.open({ kind: 'reader', id: 'reader' });
  now += 1;
  const d = await store.open({ kind: 'reader', id: 'reader' });
  t.is(await store.find(b.id), undefined, 'the oldest went when the limit was reached');
  t.truthy(await store.find(c.id));
  t.truthy(await store.find(d.id));
  await store.close(c.id);
  t.is(await store.find(c.id), undefined);
  const stored = await gw.gateway.db.knex('console_sessions').select('id_digest');
  t.false(
    stored.some((r: { id_digest: string }) => r.id_digest === d.id),
    'only digests are stored',
  );
});

test.serial('a session opened on one replica works on another (sessions live in the database)', async (t) => {
  const other = await bootGateway({ roles: ['control'], database: gw.db!, env: { CYNODE_READER_TOKEN: READER_TOKEN } });
  try {
    const admin = await signIn(gw.adminToken);
    const res = await fetch(`${other.url()}/v1/status`, { headers: { cookie: admin.cookie } });
    t.is(res.status, 200);
  } finally {
    await other.stop();
  }
});

test.serial('failed sign-ins from one address are throttled: past ten, even the right token waits', async (t) => {
  // The first test already spent one failure from this address.
  for (let i = 0; i < 9; i++) t.is((await send('/console/session', { method: 'POST', body: { token: `wrong-${i}` } })).status, 401);
  const refused = await send('/console/session', { method: 'POST', body: { token: gw.adminToken } });
  t.is(refused.status, 429);
  t.truthy(refused.headers.get('retry-after'));
});
