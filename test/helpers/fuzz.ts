import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ERROR_STATUS } from '../../src/errors/codes.js';
import { packageRoot } from '../../src/lib/package-root.js';
import { ROUTE_TABLE } from '../../src/routes.js';
import type { Role } from '../../src/server/roles.js';
import type { Access } from '../../src/server/route.js';
import { type Random, seeded } from './inputs/random.js';

export { seeded, type Random };

// ---------------------------------------------------------------------------------------------
// The routes: read from the code, so a route added later is fuzzed without anyone remembering.
// ---------------------------------------------------------------------------------------------

/** A route as the source declares it: `router.<method>(<path>)`; a regex route's capture is `*`. */
export interface SourceRoute {
  method: string;
  path: string;
  file: string;
}

/** Every `router.get|post|put|delete|patch|all(...)` in `src/`, with constants and regex paths resolved. */
export function sourceRoutes(): SourceRoute[] {
  const root = join(packageRoot(), 'src');
  const files = (readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => join(root, f));
  const texts = new Map(files.map((f) => [f, readFileSync(f, 'utf8')]));
  const constants = new Map<string, string>();
  for (const text of texts.values()) {
    for (const m of text.matchAll(/export const ([A-Z_]+) = '(\/[^']*)'/g)) constants.set(m[1]!, m[2]!);
  }
  const routes: SourceRoute[] = [];
  for (const [file, text] of texts) {
    for (const m of text.matchAll(/\brouter\.(get|post|put|delete|patch|all)\(\s*(?:'([^']+)'|([A-Z_]+)|\/\^((?:\\.|[^/])+)\$\/)/g)) {
      const path = m[2] ?? (m[3] ? constants.get(m[3]) : undefined) ?? m[4]?.replaceAll('\\/', '/').replace(/\(\.\+\)$/, '*');
      if (!path) throw new Error(`cannot resolve the path of router.${m[1]} in ${file}`);
      routes.push({ method: m[1]!.toUpperCase(), path, file: file.slice(root.length + 1) });
    }
  }
  return routes;
}

// ---------------------------------------------------------------------------------------------
// What the fuzzer knows about a live gateway: its ports, real credentials and real ids.
// ---------------------------------------------------------------------------------------------

/** Real secrets and ids, so most requests get past authentication and reach the handlers. */
export interface FuzzTarget {
  ports: Record<Role, number>;
  adminToken: string;
  workerToken: string;
  /** A second worker's token, for the route that ends the session it is called with (`POST /deregister`). */
  spareWorkerToken: string;
  psk: string;
  /** `name=value` of a live console session, for the route that answers only to a session cookie. */
  consoleCookie: string;
  ids: { jobId: string; finishedJobId: string; leaseId: string; credentialId: string; pskId: string; decisionId: string; taskId: string };
  maxBodyBytes: number;
  /** Signs a forward token for exactly these body bytes, as the control plane does, so egress handlers are reached. */
  signForward: (body: Buffer) => Promise<string>;
}

/** How a route authenticates, which decides what valid and invalid credentials look like. */
type Auth = 'none' | 'admin' | 'worker' | 'caller' | 'psk' | 'forward' | 'console';

/** One fuzzed route: where it lives, how it authenticates, a valid body to start from. */
export interface RouteSpec {
  role: Role;
  method: string;
  /** `:name` segments are filled from `params`; `*` takes any tail. */
  path: string;
  auth: Auth;
  /** A valid body, before mutation; absent when the route reads no body. */
  body?: (t: FuzzTarget, r: Random) => unknown;
  params?: Record<string, (t: FuzzTarget) => string[]>;
  /** Ends the session of the worker token it is called with: fuzzed with the spare worker's token. */
  endsSession?: true;
  /** Extra headers a valid request carries. */
  headers?: (t: FuzzTarget, r: Random) => [string, string][];
  /** Found in the source but not described here: fuzzed on every port with generic bodies. */
  generic?: boolean;
  /** The body's media type when it is not JSON (a raw bundle archive): JSON poisons do not apply to it. */
  mediaType?: string;
}

const ALL_ROLES: readonly Role[] = ['control', 'mcp', 'egress'];
const SEED_REPORT = {
  node_id: 'fuzz-node-01',
  labels: ['cloud'],
  region: 'us-east-1',
  inference_mode: 'provider_api',
  supported_providers: ['openai'],
  max_concurrency: 2,
  rate_limits: { rpm: 60 },
};
const chat = (t: FuzzTarget) => ({
  provider: 'openai',
  operation: 'chat.completions',
  task_id: t.ids.taskId,
  job_id: t.ids.jobId,
  params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 },
});
const jobId = (t: FuzzTarget) => [t.ids.jobId];

/** What the fuzzer knows of one route beyond the table: a valid body, real path parameters, headers. */
type Sample = Pick<RouteSpec, 'body' | 'params' | 'headers' | 'endsSession'> & { auth?: Auth };

const prefs: Sample = {
  params: { scope: () => ['system', 'user', 'group', 'project'], id: () => ['default', 'user-f'], key: () => ['cloud_allowed'] },
};

const chatParams = () => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
const anthropicParams = () => ({ model: 'claude-3-5-haiku-latest', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
// The drop-in model APIs: the worker's JWT names the job it calls for in a header.
const jobHeader = (t: FuzzTarget): [string, string][] => [['x-cynode-job-id', t.ids.jobId]];

/** Valid requests per route (`METHOD path` as the route table names it); a route with none is fuzzed from its path alone. */
const SAMPLES: Record<string, Sample> = {
  'POST /openai/v1/chat/completions': { body: chatParams, headers: jobHeader },
  'POST /openai/v1/responses': { body: () => ({ model: 'gpt-4o-mini', input: 'hi', max_output_tokens: 4 }), headers: jobHeader },
  'POST /openai/v1/embeddings': { body: () => ({ model: 'text-embedding-3-small', input: 'hi' }), headers: jobHeader },
  'GET /openai/v1/models': { headers: jobHeader },
  'POST /anthropic/v1/messages': { body: anthropicParams, headers: jobHeader },
  'POST /anthropic/v1/messages/count_tokens': {
    body: () => ({ model: 'claude-3-5-haiku-latest', messages: [{ role: 'user', content: 'hi' }] }),
    headers: jobHeader,
  },
  'GET /anthropic/v1/models': { headers: jobHeader },
  'GET /v1/bundles/{name}': {
    params: { name: () => ['cynode'] },
    headers: (_t, r) =>
      r.chance(0.3)
        ? [
            ['prefer', r.pick(['modes=long-polling;wait=0', 'modes=long-polling;wait=-5', 'modes=long-polling;wait=1e99'])],
            ['if-none-match', r.pick(['*', '"x"', 'W/"y"'])],
          ]
        : [],
  },
  'GET /v1/settings/{key}': { params: { key: () => ['cloud_routing.enabled'] } },
  'PUT /v1/settings/{key}': { params: { key: () => ['cloud_routing.enabled'] }, body: () => ({ value: true }) },
  'POST /v1/data/{path}': {
    params: {
      '*': () => ['cynode/register/decision', 'cynode/dispatch/decision', 'cynode/api_call/decision', 'cynode/mcp_tool_invoke/decision'],
    },
    body: () => ({ input: { action: 'register', subject: SEED_REPORT } }),
  },
  'GET /v1/decisions/{id}': { params: { id: (t) => [t.ids.decisionId] } },
  // The candidate bundle is a raw gzip body; whatever JSON the fuzzer sends is refused with a stable 4xx.
  'POST /v1/policy/replay': { body: () => ({ bundle: 'not-a-gzip-archive' }) },
  'GET /v1/decisions/{id}/audit': { params: { id: (t) => [t.ids.decisionId] } },
  // Answers only to a session cookie (a bearer token carries no session: 404), so it is fuzzed with one.
  'GET /console/session': { auth: 'console' },
  'POST /console/session': { body: (_t, r) => ({ token: r.pick(['not-a-token', 'x'.repeat(64)]) }) },
  'GET /console/assets/{path}': { params: { '*': () => ['app.js', 'app.css', 'index.html'] } },
  'GET /v1/preferences/{scope}/{id}/{key}': prefs,
  'PUT /v1/preferences/{scope}/{id}/{key}': { ...prefs, body: () => ({ value: true }) },
  'DELETE /v1/preferences/{scope}/{id}/{key}': prefs,
  'POST /v1/credentials': { body: (_t, r) => ({ provider: 'openai', name: `fuzz-${r.int(1e6)}`, secret: 'sk-fuzz-not-a-real-key-0000' }) },
  'GET /v1/credentials/{id}': { params: { id: (t) => [t.ids.credentialId] } },
  'POST /v1/credentials/{id}/rotate': { params: { id: (t) => [t.ids.credentialId] }, body: () => ({ secret: 'sk-fuzz-rotated-000000' }) },
  'POST /v1/credentials/{id}/disable': { params: { id: (t) => [t.ids.credentialId] } },
  'PUT /v1/budgets/{scope}/{id}': {
    params: { scope: () => ['task', 'user', 'group', 'project', 'subject'], id: (t) => [t.ids.taskId, 'user-f'] },
    body: (_t, r) => r.pick([{ limit_usd: 1 }, { limit_usd: 2, period: 'day', reset: 'rolling', soft_limit_usd: 1, model: 'gpt-4o' }]),
  },
  'GET /v1/budgets/{scope}/{id}': { params: { scope: () => ['task', 'user', 'group', 'project', 'subject'], id: (t) => [t.ids.taskId] } },
  'POST /v1/psks': {
    body: (_t, r) => ({ name: 'fuzz', ...(r.chance(0.3) && { constraints: { node_id_pattern: 'fuzz-*', regions: ['us-east-1'] } }) }),
  },
  'POST /v1/workers/{node_id}/quarantine': { params: { node_id: () => ['fuzz-absent-node'] }, body: () => ({ reason: 'fuzz' }) },
  'POST /v1/workers/{node_id}/release': { params: { node_id: () => ['fuzz-main-01'] } },
  'DELETE /v1/psks/{id}': { params: { id: () => ['00000000-0000-4000-8000-000000000000'] } },
  'POST /v1/jobs': {
    body: (t) => ({
      task_id: t.ids.taskId,
      user_id: 'user-f',
      payload: { kind: 'echo', input: 'x' },
      requirements: { labels: ['nowhere'] },
    }),
    headers: (_t, r) => [['idempotency-key', `fuzz-${r.int(1e9)}`]],
  },
  'GET /v1/jobs/{id}': { params: { id: jobId } },
  'POST /v1/jobs/{id}/cancel': { params: { id: (t: FuzzTarget) => ['00000000-0000-4000-8000-000000000000', t.ids.finishedJobId] } },
  'POST /register': { body: (_t, r) => ({ ...SEED_REPORT, node_id: `fuzz-node-${r.int(50)}` }) },
  'POST /status': {
    body: (t) => ({ health: { ok: true }, load: { running: 1 }, jobs: [{ job_id: t.ids.jobId, lease_id: t.ids.leaseId }] }),
  },
  'POST /deregister': { endsSession: true },
  'POST /jobs/poll': { body: () => ({ max_jobs: 1, wait_ms: 0 }) },
  'POST /result': {
    body: (t) => ({ job_id: t.ids.jobId, lease_id: '00000000-0000-4000-8000-000000000000', status: 'succeeded', result: { ok: 1 } }),
  },
  'POST /v1/api/call': { body: chat },
  'POST /v1/agent-tokens': { body: (t) => ({ agent_type: 'sandbox', job_id: t.ids.jobId }) },
  'POST /mcp': { body: (t, r) => rpc(t, r), headers: () => [['accept', 'application/json, text/event-stream']] },
  'POST /v1/egress/call': {
    body: (t, r) => ({ request_id: uuidOf(r), provider: 'openai', operation: 'chat.completions', params: chat(t).params }),
  },
};

const AUTH_OF: Record<Access, Auth> = {
  public: 'none',
  admin: 'admin',
  reader: 'admin',
  bundleReader: 'admin',
  worker: 'worker',
  agent: 'worker',
  modelKey: 'worker',
  workerOrAdmin: 'caller',
  psk: 'psk',
  forward: 'forward',
  metrics: 'admin',
};
const routerPathOf = (path: string) => path.replace(/\/\{path\}$/, '/*').replace(/\{(\w+)\}/g, ':$1');

/**
 * The gateway's routes with the role they are mounted on and a valid request for each: the
 * route table, one spec per role that serves a route. A path that answers every method (the
 * MCP endpoint) is fuzzed as one `ALL` spec with the credentials its POST needs.
 */
export const ROUTES: readonly RouteSpec[] = ROUTE_TABLE.filter(
  (route) => !(route.method !== 'all' && ROUTE_TABLE.some((r) => r.method === 'all' && r.path === route.path)),
).flatMap((route) => {
  const real = route.method === 'all' ? (ROUTE_TABLE.find((r) => r.path === route.path && r.method !== 'all') ?? route) : route;
  const key = `${real.method.toUpperCase()} ${real.path}`;
  return route.roles.map((role): RouteSpec => ({
    role,
    method: route.method.toUpperCase(),
    path: routerPathOf(route.path),
    auth: AUTH_OF[real.access],
    ...(real.body?.mediaType !== undefined && { mediaType: real.body.mediaType }),
    ...SAMPLES[key],
  }));
});

function uuidOf(r: Random): string {
  const hex = Array.from({ length: 32 }, () => '0123456789abcdef'[r.int(16)]).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20)}`;
}

function rpc(t: FuzzTarget, r: Random): unknown {
  const id = r.pick<unknown>([1, 'a', 0, null, -1, 1.5, 'x'.repeat(100)]);
  const one = () =>
    r.pick<unknown>([
      {
        jsonrpc: '2.0',
        id,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'fuzz', version: '1' } },
      },
      { jsonrpc: '2.0', id, method: 'tools/list', params: {} },
      { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'api.call', arguments: chat(t) } },
      { jsonrpc: '2.0', id, method: 'tools/call', params: { name: r.pick(['nope', '', '../etc', 'api.call\u0000']), arguments: {} } },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      {
        jsonrpc: '2.0',
        id,
        method: r.pick(['resources/list', 'prompts/get', 'ping', 'logging/setLevel', '__proto__', 'rpc.discover']),
        params: {},
      },
      { jsonrpc: '2.0', id, result: {} },
      { jsonrpc: '1.0', id, method: 'tools/list' },
    ]);
  return r.chance(0.15) ? Array.from({ length: 1 + r.int(4) }, one) : one();
}

/** A route a running role serves, as `Gateway.routes` lists it. */
export interface LiveRoute {
  path: string | RegExp;
  methods: string[];
  match(path: string): boolean;
}

const samplePath = (path: string) => path.replace(/:\w+/g, 'x').replace('*', 'x/y');
const covers = (spec: RouteSpec, live: LiveRoute) =>
  (typeof live.path === 'string' ? live.path === spec.path : live.match(samplePath(spec.path))) &&
  (spec.method === 'ALL' || live.methods.includes(spec.method));

/**
 * The fuzzed route list: the table above, checked against the routes each role really serves
 * (a stale entry throws), plus any served route the table lacks, fuzzed generically on its role.
 */
export function fuzzRoutes(live: Partial<Record<Role, readonly LiveRoute[]>>): { routes: RouteSpec[]; added: string[] } {
  const stale = ROUTES.filter((spec) => !(live[spec.role] ?? []).some((l) => covers(spec, l)));
  if (stale.length > 0) throw new Error(`fuzz routes no role serves: ${stale.map((r) => `${r.role} ${r.method} ${r.path}`).join(', ')}`);
  const added: string[] = [];
  const generic: RouteSpec[] = [];
  for (const role of ALL_ROLES) {
    for (const l of live[role] ?? []) {
      if (ROUTES.some((spec) => spec.role === role && covers(spec, l))) continue;
      const path =
        typeof l.path === 'string'
          ? l.path
          : '/' +
            l.path.source
              .replace(/^\^\\\//, '')
              .replace(/\(\.\+\)\$$/, '*')
              .replaceAll('\\/', '/');
      added.push(`${role} ${l.methods.join('|')} ${path}`);
      for (const method of l.methods.filter((m) => m !== 'HEAD')) {
        generic.push({ role, method, path, auth: 'admin', generic: true, ...(method !== 'GET' && { body: () => ({ value: 1 }) }) });
      }
    }
  }
  return { routes: [...ROUTES, ...generic], added };
}

// ---------------------------------------------------------------------------------------------
// Malformed values: the dictionary the mutations draw from.
// ---------------------------------------------------------------------------------------------

const INJECTIONS = [
  "' OR '1'='1",
  "'; DROP TABLE jobs; --",
  '1; SELECT pg_sleep(10)',
  '$(reboot)',
  '`id`',
  '| cat /etc/passwd',
  '{{7*7}}',
  '${7*7}',
  '<%= 7*7 %>',
  '#{7*7}',
  '<script>alert(1)</script>',
  '../../../../etc/passwd',
  '..\\..\\windows\\win.ini',
  '%00',
  '\u0000',
  '\u202e\u0000\ufeff',
  '\ud800',
  '☃💥ü',
  '__proto__',
  'constructor',
  '{"$where": "1"}',
  'a'.repeat(70_000),
];
const ODD: readonly unknown[] = [
  null,
  true,
  false,
  0,
  -0,
  -1,
  1.5,
  1e308,
  -1e308,
  2 ** 53 + 1,
  -(2 ** 63),
  4294967296,
  '',
  ' ',
  '0',
  'true',
  'null',
  [],
  [null],
  {},
  { '': 1 },
  { __proto__: { admin: true } },
  ...INJECTIONS,
];
const NUMBER_TEXT = [
  '1e400',
  '-1e400',
  '1E999999',
  '123456789012345678901234567890',
  '-0.0000000000000000000001',
  '0x10',
  '01',
  '.5',
  '+1',
  'NaN',
  'Infinity',
  '-Infinity',
];

const JUNK_SEGMENTS = [
  '..',
  '%2e%2e',
  '..%2f..%2f..%2fetc%2fpasswd',
  '%2e%2e%2f%2e%2e%2f',
  '....//....//',
  '%00',
  'a%00b',
  '%ff%fe',
  '%c0%ae%c0%ae',
  '%e0%a4%a',
  '%',
  '%zz',
  '%25',
  encodeURIComponent("' OR 1=1 --"),
  encodeURIComponent('{{7*7}}'),
  encodeURIComponent('$(id)'),
  encodeURIComponent('☃'),
  'x'.repeat(5000),
  '',
  '00000000-0000-0000-0000-000000000000',
  'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF',
  '-1',
  '1e99',
  '__proto__',
  'constructor',
  'prototype',
  '%2F',
  ';jsessionid=x',
  'a b',
];
const QUERY_JUNK = [
  'limit=-1',
  'limit=1e999',
  'limit=abc',
  'limit=1&limit=2',
  'state=queued&state=leased',
  'state[]=queued',
  'state=%00',
  'after=-5',
  'after=99999999999999999999',
  'request_id=%ff',
  'task_id=%27%20OR%201%3D1',
  '__proto__[x]=1',
  'constructor[prototype][x]=1',
  '%',
  '%zz=1',
  '=',
  '&&&',
  'a='.padEnd(4000, 'a'),
  'max_jobs=0',
  'max_jobs=1e9',
  'wait_ms=-1',
  'wait_ms=1.5',
  'scope=nope',
  'scope=task',
  'x=☃',
  'x=%E2%98',
  'task_id=%00',
  'task_id=%ED%A0%80',
  'task_id=%FF',
  'request_id=%00',
  'state=%00',
  'scope=%00',
  'after=%00',
  'limit=%00',
  'task_id='.padEnd(3000, 'x'),
];
const CONTENT_TYPES = [
  null,
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=latin1',
  'application/json; charset=utf-16',
  'application/json; charset=utf-7',
  'application/json;charset="UTF-8"',
  'APPLICATION/JSON',
  'application/json, text/html',
  'application/vnd.api+json',
  'application/problem+json',
  '*/*',
  'application/',
  '/',
  ';;;',
  'application/json; charset=',
  'application/json; boundary=☃',
  'ápplication/json',
  'application/json\tx',
  'application/xml',
];
const ENCODINGS = ['gzip', 'deflate', 'br', 'x-garbage', 'gzip, gzip', 'identity', 'chunked', 'ü'];
const METHODS = [
  'GET',
  'POST',
  'PUT',
  'DELETE',
  'PATCH',
  'HEAD',
  'OPTIONS',
  'TRACE',
  'PROPFIND',
  'MKCOL',
  'LOCK',
  'PURGE',
  'SEARCH',
  'QUERY',
];
const UNKNOWN_PATHS = [
  '/',
  '/v1',
  '/v1/',
  '/v2/jobs',
  '/admin',
  '/.env',
  '/.git/config',
  '/v1/jobs/',
  '//v1//jobs',
  '/v1/./status',
  '/v1/../v1/status',
  '/V1/STATUS',
  '/healthz/',
  '/v1/data',
  '/v1/data/',
  '/v1/bundles',
  '/v1/egress',
  '/mcp/',
  '/mcp/x',
  '/register/',
  '/jobs/poll/x',
  '/result/1',
  '/favicon.ico',
  '/openapi.json/x',
  '/%2e%2e/%2e%2e/etc/passwd',
  '/v1/preferences/system',
  '/v1/settings',
  '/v1/decisions',
  '/v1/credentials/x/y/z',
  '/v1/psks/a/b',
  '/\\..\\..\\',
  '/v1/api',
  '/v1/api/call/x',
  '/.well-known/',
  '/metrics/x',
];

// ---------------------------------------------------------------------------------------------
// One generated request.
// ---------------------------------------------------------------------------------------------

/** A request as bytes go on the wire: header values and the target may hold any byte (latin1). */
export interface FuzzRequest {
  role: Role;
  method: string;
  target: string;
  headers: [string, string][];
  body?: Buffer;
  /** Sent with `Transfer-Encoding: chunked` instead of a Content-Length. */
  chunked?: boolean;
  /** The route template it aims at (or `unknown`), for the totals. */
  route: string;
  /** What was done to it. */
  mutations: string[];
  /** Carries a valid forward token for its body (signed just before sending). */
  signForward?: boolean;
}

const utf8AsLatin1 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');

function fillPath(spec: RouteSpec, t: FuzzTarget, r: Random, junk: boolean, mutations: string[]): string {
  return spec.path.replace(/:(\w+)|\*/g, (whole, name: string | undefined) => {
    const real = spec.params?.[name ?? '*']?.(t) ?? [];
    if (!junk && real.length > 0) return r.pick(real);
    mutations.push('path-param');
    if (r.chance(0.1)) return utf8AsLatin1(r.pick(['../../etc/passwd', 'a b', '☃', '\u0000', '"<>', '{x}']));
    return whole === '*' && r.chance(0.3) ? `${r.pick(real.length ? real : ['x'])}/${r.pick(JUNK_SEGMENTS)}` : r.pick(JUNK_SEGMENTS);
  });
}

function authHeaders(spec: RouteSpec, t: FuzzTarget, r: Random, valid: boolean, mutations: string[]): [string, string][] {
  const bearer = (token: string): [string, string] => ['authorization', `Bearer ${token}`];
  // A route that ends the session it is called with gets the spare worker's token, in every
  // variant: a "bad" one (a signature whose last character carries only padding bits) may be valid.
  const workerToken = spec.endsSession ? t.spareWorkerToken : t.workerToken;
  const right: [string, string][] = {
    none: [],
    admin: [bearer(t.adminToken)],
    worker: [bearer(workerToken)],
    caller: [bearer(r.chance(0.5) ? workerToken : t.adminToken)],
    psk: [['x-cynode-psk', t.psk] as [string, string]],
    forward: [], // signed for the final body bytes just before sending (`signForward`)
    console: [['cookie', t.consoleCookie] as [string, string]],
  }[spec.auth];
  if (valid) return right;
  mutations.push('bad-auth');
  const jwt = workerToken;
  const [h, p, s] = jwt.split('.');
  const bad: [string, string][][] = [
    [],
    [['authorization', 'Bearer']],
    [['authorization', 'Bearer ']],
    [['authorization', `bearer ${t.adminToken}x`]],
    [['authorization', `Basic ${Buffer.from(`admin:${t.adminToken}`).toString('base64')}`]],
    [['authorization', `Bearer ${t.adminToken} extra`]],
    [bearer(t.adminToken), bearer(workerToken)],
    [bearer('garbage'), bearer(t.adminToken)],
    [bearer(`${h}.${p}.`)],
    [bearer(`${h}.${p}`)],
    [bearer(`${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${p}.`)],
    [bearer(`${h}.${Buffer.from('{"sub":"admin","exp":99999999999}').toString('base64url')}.${s}`)],
    [bearer(`${h}.${p}.${s}`.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')))],
    [bearer('e30.e30.e30')],
    [bearer('!!!.@@@.###')],
    [bearer('x'.repeat(8000))],
    [['authorization', utf8AsLatin1('Bearer tökén-☃')]],
    [['authorization', `Bearer\t${t.adminToken}`]],
    [['authorization', `Token ${t.adminToken}`]],
    [['x-cynode-psk', 'wrong-psk']],
    [
      ['x-cynode-psk', t.psk],
      ['x-cynode-psk', 'second'],
    ],
    [['x-cynode-psk', utf8AsLatin1('psk-☃')]],
    [['x-cynode-forward-token', 'not.a.token']],
    [['x-cynode-forward-token', jwt]],
  ];
  return r.pick(bad);
}

/** A structure-aware mutation of a valid JSON value: drop, retype, add, nest or inflate one field. */
function mutateValue(value: unknown, r: Random, mutations: string[]): unknown {
  const op = r.int(7);
  if (value === null || typeof value !== 'object') {
    mutations.push('retype-root');
    return r.pick(ODD);
  }
  const copy: Record<string, unknown> = Array.isArray(value) ? { ...value } : { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  const key = keys.length > 0 ? r.pick(keys) : 'x';
  switch (op) {
    case 0:
      mutations.push('missing-field');
      delete copy[key];
      break;
    case 1:
      mutations.push('wrong-type');
      copy[key] = r.pick(ODD);
      break;
    case 2:
      mutations.push('extra-field');
      copy[r.pick(['extra', '__proto__', 'constructor', 'admin', 'is_admin', '', 'x'.repeat(300), utf8Junk()])] = r.pick(ODD);
      break;
    case 3:
      mutations.push('deep-nesting');
      copy[key] = nest(r.pick([20, 200, 2000]), r);
      break;
    case 4:
      mutations.push('nested-mutation');
      copy[key] = mutateValue(copy[key], r, mutations);
      break;
    case 5:
      mutations.push('huge-list');
      copy[key] = Array.from({ length: r.pick([1025, 5000]) }, (_, i) => (r.chance(0.5) ? i : { job_id: 'x', lease_id: i }));
      break;
    default:
      mutations.push('injection');
      copy[key] = r.pick(INJECTIONS);
  }
  return Array.isArray(value) ? Object.values(copy) : copy;
}

const utf8Junk = () => '\ud83d';

function nest(depth: number, r: Random): unknown {
  let v: unknown = r.pick(ODD);
  for (let i = 0; i < depth; i++) v = r.chance(0.5) ? [v] : { a: v };
  return v;
}

/** A text-level mutation of serialised JSON: broken syntax, odd numbers, bad bytes, deep nesting. */
function mutateText(text: string, r: Random, mutations: string[]): Buffer {
  const op = r.int(14);
  mutations.push(
    [
      'truncated',
      'flipped-byte',
      'invalid-utf8',
      'nul-bytes',
      'bom',
      'trailing-comma',
      'number-text',
      'duplicate-keys',
      'comment',
      'deep-text-nesting',
      'not-json',
      'empty',
      'deep-inner-nesting',
      'escaped-unstorable',
    ][op]!,
  );
  switch (op) {
    case 0:
      return Buffer.from(text.slice(0, r.int(text.length)));
    case 1: {
      const b = Buffer.from(text);
      if (b.length > 0) b[r.int(b.length)] = r.int(256);
      return b;
    }
    case 2: {
      const at = r.int(text.length);
      return Buffer.concat([
        Buffer.from(text.slice(0, at)),
        Buffer.from(r.pick([[0xff, 0xfe], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x28, 0xa1], [0x80]])),
        Buffer.from(text.slice(at)),
      ]);
    }
    case 3:
      return Buffer.from(text.replace(/"([^"]*)"/, '"$1\u0000"').replace(/:/, ':\u0000'));
    case 4:
      return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
    case 5:
      return Buffer.from(text.replace(/}$/, ',}'));
    case 6:
      return Buffer.from(text.replace(/\d+(\.\d+)?|true|false|null/, r.pick(NUMBER_TEXT)));
    case 7:
      return Buffer.from(text.replace(/^\{/, '{"value":1,"value":"dup","__proto__":{"x":1},"__proto__":null,'));
    case 8:
      return Buffer.from(`/* c */${text}// c`);
    case 9: {
      const depth = r.pick([1000, 10_000, 100_000]);
      return Buffer.from(r.chance(0.5) ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
    }
    case 10:
      return Buffer.from(
        r.pick([
          'undefined',
          "{'a':1}",
          '{a:1}',
          'true',
          '"str"',
          '42',
          'null',
          '[]',
          '<xml/>',
          'a=1&b=2',
          '\u0000',
          '{"value":}',
          '{"value"',
          '}{',
        ]),
      );
    case 12: {
      // Deep nesting inside an otherwise valid body, where handlers and the policy see it.
      const depth = r.pick([129, 1000, 10_000, 100_000]);
      const deep = r.chance(0.5) ? `${'['.repeat(depth)}1${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
      return Buffer.from(text.replace(/:("[^"]*"|-?\d[\d.eE+-]*|true|false|null)/, () => `:${deep}`));
    }
    case 13:
      return Buffer.from(
        text.replace(
          /"([^"]*)"(?=[,}\]])/,
          (_, v: string) => `"${v}${r.pick(['\\u0000', '\\ud800', '\\udfff', '\\udbff\\u0041', '\\u0000\\u0000'])}"`,
        ),
      );
    default:
      return Buffer.alloc(0);
  }
}

function hugeBody(t: FuzzTarget, r: Random): Buffer {
  const extra = r.pick([1, 100, 65_536]);
  const fill = 'a'.repeat(t.maxBodyBytes + extra);
  return Buffer.from(r.chance(0.5) ? `{"value":"${fill}"}` : `[${'1,'.repeat(Math.ceil((t.maxBodyBytes + extra) / 2))}1]`);
}

/** Generates `count` malformed requests with one seed: the same seed gives the same requests. */
export function generate(seed: number, count: number, routes: readonly RouteSpec[], t: FuzzTarget): FuzzRequest[] {
  const r = seeded(seed);
  const out: FuzzRequest[] = [];
  for (let i = 0; i < count; i++) out.push(one(r, routes, t));
  return out;
}

function one(r: Random, routes: readonly RouteSpec[], t: FuzzTarget): FuzzRequest {
  const mutations: string[] = [];
  // A few requests aim at no route at all, or at a route on the wrong port.
  if (r.chance(0.04)) {
    mutations.push('unknown-path');
    const path = r.pick(UNKNOWN_PATHS);
    return {
      role: r.pick(ALL_ROLES),
      method: r.pick(METHODS),
      target: path,
      headers: [['authorization', `Bearer ${t.adminToken}`]],
      route: 'unknown',
      mutations,
    };
  }
  const spec = r.pick(routes);
  const role = r.chance(0.03) ? r.pick(ALL_ROLES) : spec.role;
  if (role !== spec.role) mutations.push('wrong-port');
  let method = spec.method === 'ALL' ? 'POST' : spec.method;
  if (r.chance(0.06)) {
    method = r.pick(METHODS);
    mutations.push('method');
  }
  let target = fillPath(spec, t, r, r.chance(0.12), mutations);
  if (r.chance(0.1)) {
    mutations.push('query-junk');
    target += `?${Array.from({ length: 1 + r.int(3) }, () => r.pick(QUERY_JUNK)).join('&')}`;
  }
  const validAuth = r.chance(0.75);
  const headers: [string, string][] = [...authHeaders(spec, t, r, validAuth, mutations), ...(spec.headers?.(t, r) ?? [])];

  let body: Buffer | undefined;
  let contentType: string | null = null;
  const wantsBody = spec.body !== undefined && method !== 'GET' && method !== 'HEAD';
  if (wantsBody || r.chance(0.05)) {
    const valid = spec.body?.(t, r) ?? { value: 1 };
    const value = r.chance(0.6) ? mutateValue(valid, r, mutations) : valid;
    const text = JSON.stringify(value) ?? 'null';
    body = r.chance(0.35) ? mutateText(text, r, mutations) : Buffer.from(text);
    contentType = 'application/json';
    if (r.chance(0.03)) {
      mutations.push('huge-body');
      body = hugeBody(t, r);
    }
  }
  if (r.chance(0.12)) {
    mutations.push('content-type');
    contentType = r.pick(CONTENT_TYPES);
  }
  if (contentType !== null) headers.push(['content-type', utf8AsLatin1(contentType)]);
  if (body && r.chance(0.06)) {
    mutations.push('content-encoding');
    const enc = r.pick(ENCODINGS);
    if (enc === 'gzip' && r.chance(0.5)) body = gzipSync(body);
    headers.push(['content-encoding', utf8AsLatin1(enc)]);
  }
  if (r.chance(0.08)) headers.push(...oddHeaders(r, mutations));
  return {
    role,
    method,
    target,
    headers,
    ...(body && { body }),
    ...(body && r.chance(0.1) && { chunked: true }),
    ...(spec.auth === 'forward' && validAuth && { signForward: true }),
    route: `${spec.method} ${spec.path}`,
    mutations,
  };
}

function oddHeaders(r: Random, mutations: string[]): [string, string][] {
  mutations.push('odd-headers');
  return r.pick<[string, string][]>([
    [['x-request-id', utf8AsLatin1('☃'.repeat(50))]],
    [['x-request-id', 'a'.repeat(10_000)]],
    [['x-big', 'b'.repeat(12_000)]],
    [['x-huge', 'h'.repeat(20_000)]],
    Array.from({ length: 300 }, (_, i): [string, string] => [`x-many-${i}`, 'v']),
    [
      ['accept', 'text/html'],
      ['accept', '*/*'],
    ],
    [['accept', '']],
    [['accept-charset', 'utf-16']],
    [
      ['content-type', 'application/json'],
      ['content-type', 'text/plain'],
    ],
    [['idempotency-key', utf8AsLatin1('ключ')]],
    [['idempotency-key', 'k'.repeat(5000)]],
    [['idempotency-key', "'; DROP TABLE jobs; --"]],
    [['x-forwarded-for', '1.2.3.4, 127.0.0.1']],
    [['host', 'evil.example']],
    [['expect', '100-continue']],
    [
      ['if-none-match', '*'],
      ['if-modified-since', 'yesterday'],
    ],
    [['range', 'bytes=0-1,5-9']],
    [['prefer', 'modes=long-polling;wait=999999']],
    [
      ['mcp-session-id', 'x'],
      ['mcp-protocol-version', '1900-01-01'],
    ],
    [['cookie', 'a=1; '.repeat(500)]],
  ]);
}

// ---------------------------------------------------------------------------------------------
// The raw HTTP/1.1 client: sends what `fetch` refuses to, reads until the server closes.
// ---------------------------------------------------------------------------------------------

/** An answer, or `status: 0` when the connection ended without one. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  error?: string;
}

/** The request's bytes: request line and headers in latin1 (so any byte can be sent), then the body. */
export function encode(req: FuzzRequest, port: number): { head: Buffer; body: Buffer } {
  const lines = [`${req.method} ${req.target} HTTP/1.1`];
  if (!req.headers.some(([k]) => k === 'host')) lines.push(`host: 127.0.0.1:${port}`);
  lines.push('connection: close', ...req.headers.map(([k, v]) => `${k}: ${v}`));
  let body = req.body ?? Buffer.alloc(0);
  if (req.body && req.chunked) {
    lines.push('transfer-encoding: chunked');
    const parts: Buffer[] = [];
    for (let at = 0; at < body.length; at += 65_536) {
      const piece = body.subarray(at, at + 65_536);
      parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
    }
    body = Buffer.concat([...parts, Buffer.from('0\r\n\r\n')]);
  } else if (req.body || ['POST', 'PUT', 'PATCH'].includes(req.method)) {
    lines.push(`content-length: ${body.length}`);
  }
  return { head: Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body };
}

/**
 * Sends one request on its own connection and reads the answer to EOF. The body goes in slices
 * and stops once the server answers (a 413 before the body is read), so an early answer is kept.
 */
export function send(port: number, req: FuzzRequest, timeoutMs = 20_000): Promise<RawResponse> {
  const { head, body } = encode(req, port);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let answered = false;
    const socket = connect(port, '127.0.0.1');
    socket.setTimeout(timeoutMs, () => {
      error = 'timeout';
      socket.destroy();
    });
    socket.on('data', (c: Buffer) => {
      answered = true;
      chunks.push(c);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
    });
    socket.on('close', () => resolve({ ...parse(Buffer.concat(chunks), req.method === 'HEAD'), ...(error && { error }) }));
    socket.on('connect', () => {
      socket.write(head);
      let at = 0;
      const pump = () => {
        while (at < body.length && !answered && !socket.destroyed) {
          const piece = body.subarray(at, at + 65_536);
          at += piece.length;
          if (!socket.write(piece)) return void socket.once('drain', pump);
        }
      };
      pump();
    });
  });
}

function parse(raw: Buffer, head: boolean): Omit<RawResponse, 'error'> {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, headers: {}, body: raw };
  const [statusLine, ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  // An interim answer (100 Continue) precedes the real one.
  if (status >= 100 && status < 200 && status !== 101) return parse(raw.subarray(end + 4), head);
  let body = head ? Buffer.alloc(0) : raw.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body);
  return { status, headers, body };
}

function dechunk(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  while (at < raw.length) {
    const eol = raw.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(raw.subarray(at, eol).toString('latin1'), 16);
    if (!size) break;
    parts.push(raw.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** Runs `work` over `items` with at most `limit` in flight. */
export async function pool<T, R>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await work(items[i]!, i);
      }
    }),
  );
  return results;
}

// ---------------------------------------------------------------------------------------------
// Judging an answer.
// ---------------------------------------------------------------------------------------------

/** What an answer says, for the totals: its status and its stable code (or how it is shaped). */
export interface Verdict {
  status: number;
  code: string;
  /** Why the answer breaks the contract, if it does. */
  problem?: string;
}

/**
 * Checks one answer against the contract: no 5xx; every refusal a JSON `{error: {code,
 * message}}` whose code is in the closed set with this very status; on `/mcp`, a JSON-RPC error
 * object is the refusal's shape instead (the SDK transport's own 4xx, and tool errors in a 200).
 */
export function judge(req: FuzzRequest, res: RawResponse): Verdict {
  if (res.status === 0) return { status: 0, code: `no-answer:${res.error ?? 'closed'}`, problem: 'the connection ended without an answer' };
  const isMcp = req.role === 'mcp' && /^\/mcp\/?(\?|$)/.test(req.target);
  const json = parseJson(res.body);
  if (res.status >= 500)
    return { status: res.status, code: codeOf(json), problem: `status ${res.status}: ${res.body.toString('utf8').slice(0, 300)}` };
  if (res.status < 400) {
    if (isMcp && req.method === 'POST' && res.status === 200 && /json/.test(res.headers['content-type'] ?? '')) {
      const messages = Array.isArray(json) ? json : [json];
      if (!messages.every((m) => m && m.jsonrpc === '2.0' && ('result' in m || isRpcError(m.error))))
        return { status: 200, code: 'rpc', problem: 'not a JSON-RPC answer' };
      const error = messages.find((m) => m.error)?.error;
      // JSON-RPC's internal error is the MCP form of a 500.
      if (error?.code === -32603) return { status: 200, code: 'rpc:-32603', problem: `JSON-RPC internal error: ${error.message}` };
      return { status: 200, code: error ? `rpc:${error.code}` : 'rpc:result' };
    }
    return { status: res.status, code: 'ok' };
  }
  if (req.method === 'HEAD' && /^application\/json/.test(res.headers['content-type'] ?? '')) return { status: res.status, code: 'head' }; // no body to read a code from
  if (!/^application\/json/.test(res.headers['content-type'] ?? ''))
    return { status: res.status, code: 'no-json', problem: `a ${res.status} without a JSON body` };
  // The drop-in Anthropic API answers in Anthropic's shape: the stable code is the error's `type`.
  const isAnthropic = req.role === 'mcp' && req.target.startsWith('/anthropic/');
  const code = isAnthropic && json?.type === 'error' ? json?.error?.type : json?.error?.code;
  if (isMcp && json?.jsonrpc === '2.0' && isRpcError(json.error)) return { status: res.status, code: `rpc:${json.error.code}` };
  if (typeof code !== 'string' || typeof json.error.message !== 'string')
    return { status: res.status, code: 'no-code', problem: 'no {error: {code, message}}' };
  if (!(code in ERROR_STATUS)) return { status: res.status, code, problem: `code '${code}' is not in the stable set` };
  if (ERROR_STATUS[code as keyof typeof ERROR_STATUS] !== res.status)
    return { status: res.status, code, problem: `code '${code}' belongs to ${ERROR_STATUS[code as keyof typeof ERROR_STATUS]}` };
  return { status: res.status, code };
}

function isRpcError(e: any): boolean {
  return e !== null && typeof e === 'object' && Number.isInteger(e.code) && typeof e.message === 'string';
}

function codeOf(json: any): string {
  return typeof json?.error?.code === 'string' ? json.error.code : 'none';
}

function parseJson(body: Buffer): any {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Counts by key, sorted by count, for `t.log`. */
export function tally(keys: readonly string[]): Record<string, number> {
  const counts = new Map<string, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]));
}
