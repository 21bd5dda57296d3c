import { Validator } from '@seriousme/openapi-schema-validator';
import test from 'ava';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ERROR_STATUS } from '../../src/errors/codes.js';
import { buildOpenApiDocument, type OpenApiDocument } from '../../src/openapi/index.js';
import type { RegisteredRoute } from '../../src/server/app.js';
import { ROLES, type Role } from '../../src/server/roles.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call } from '../helpers/http.js';

/** The operations an OpenAPI 3.1 path item can name, besides HEAD and OPTIONS. */
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'trace'] as const;
/**
 * Koa-router adds HEAD to every GET and answers OPTIONS itself; `router.all` also registers
 * methods (ACL, PROPFIND, ...) that OpenAPI has no field for. The document describes the rest.
 */
const describable = (method: string) => (METHODS as readonly string[]).includes(method.toLowerCase());

let gw: BootedGateway;
let doc: OpenApiDocument;

type Op = { responses: Record<string, { 'x-error-codes'?: string[] }>; operationId: string; parameters?: { in: string; name: string }[] };
const rolesOf = (path: string) => doc.paths[path]!['x-cynode-roles'] as Role[];
const opsOf = (path: string) => METHODS.filter((m) => doc.paths[path]![m] !== undefined);
const op = (path: string, method: string) => doc.paths[path]![method] as Op;
/** A concrete request path for a documented template. */
const sample = (path: string) => path.replace('{path}', 'cynode/register/decision').replace(/\{\w+\}/g, 'x');
const serves = (routes: RegisteredRoute[], method: string, path: string) =>
  routes.some((r) => r.methods.includes(method.toUpperCase()) && r.match(path));

test.before(async () => {
  gw = await bootGateway();
  doc = buildOpenApiDocument('test');
});
test.after.always(() => gw?.stop());

test('every real route of every role is documented, on that role, with its method', (t) => {
  let checked = 0;
  for (const role of ROLES) {
    const routes = gw.gateway.routes[role]!;
    t.true(routes.length > 0, role);
    for (const route of routes) {
      for (const method of route.methods.filter(describable)) {
        const documented =
          typeof route.path === 'string'
            ? [route.path.replace(/:(\w+)/g, '{$1}')].filter((p) => doc.paths[p] !== undefined)
            : Object.keys(doc.paths).filter((p) => route.match(sample(p)));
        const hit = documented.find(
          (p) => rolesOf(p).includes(role) && opsOf(p).includes(method.toLowerCase() as (typeof METHODS)[number]),
        );
        t.truthy(hit, `${role}: ${method} ${String(route.path)} is not documented`);
        checked++;
      }
    }
  }
  t.true(checked >= 45, `${checked} route methods checked`);
});

test('every documented operation exists on exactly the roles the document names', (t) => {
  let checked = 0;
  for (const path of Object.keys(doc.paths)) {
    for (const method of opsOf(path)) {
      for (const role of ROLES) {
        const listed = rolesOf(path).includes(role);
        t.is(
          serves(gw.gateway.routes[role]!, method, sample(path)),
          listed,
          `${method.toUpperCase()} ${path} on ${role}: documented ${listed}`,
        );
        checked++;
      }
    }
  }
  t.true(checked >= 3 * 45);
});

test('the document is valid OpenAPI 3.1: the official schema, resolvable $refs, compilable schemas, unique operation ids', async (t) => {
  t.regex(doc.openapi, /^3\.1\.\d+$/);
  const result = await new Validator().validate(structuredClone(doc));
  t.true(result.valid, JSON.stringify(result.errors, null, 1));

  const refs: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === '$ref' && typeof x === 'string') refs.push(x);
        else walk(x);
      }
    }
  };
  walk(doc);
  t.true(refs.length > 50);
  for (const ref of new Set(refs)) {
    t.true(ref.startsWith('#/'), ref);
    const target = ref
      .slice(2)
      .split('/')
      .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
    t.not(target, undefined, `${ref} does not resolve`);
  }

  const ajv = new Ajv2020({ strict: false, validateFormats: false });
  const schemas = (doc.components as { schemas: Record<string, object> }).schemas;
  for (const [name, schema] of Object.entries(schemas)) ajv.addSchema(schema, `#/components/schemas/${name}`);
  for (const name of Object.keys(schemas)) t.notThrows(() => ajv.compile({ $ref: `#/components/schemas/${name}` }), name);

  const ids = Object.keys(doc.paths).flatMap((p) => opsOf(p).map((m) => op(p, m).operationId));
  t.is(new Set(ids).size, ids.length, 'operation ids are unique');
});

test('refusals are documented with the stable codes and their statuses from src/errors/codes.ts', (t) => {
  for (const path of Object.keys(doc.paths)) {
    const params = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
    for (const method of opsOf(path)) {
      const o = op(path, method);
      t.deepEqual(
        (o.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name),
        params,
        `${method} ${path} declares its path parameters`,
      );
      t.truthy(o.responses['500'], `${method} ${path} documents 500`);
      for (const [status, response] of Object.entries(o.responses)) {
        for (const code of response['x-error-codes'] ?? []) {
          t.true(code in ERROR_STATUS, `${code} is a stable code`);
          t.is(String(ERROR_STATUS[code as keyof typeof ERROR_STATUS]), status, `${method} ${path}: ${code} under ${status}`);
        }
      }
    }
  }
  const error = (doc.components as { schemas: Record<string, any> }).schemas.Error;
  t.deepEqual(error.properties.error.properties.code.enum, Object.keys(ERROR_STATUS), 'the Error schema enumerates the closed set');
});

test('every role serves the same document at /openapi.json', async (t) => {
  for (const role of ROLES) {
    const res = await call<OpenApiDocument>(gw.url(role), '/openapi.json', { token: null });
    t.is(res.status, 200);
    t.regex(res.headers.get('content-type') ?? '', /application\/json/);
    t.deepEqual(res.body.paths, doc.paths, role);
    t.is(res.body.openapi, doc.openapi);
  }
});

test('real answers match the documented success status and schema', async (t) => {
  const ajv = new Ajv2020({ strict: false, validateFormats: false });
  const schemas = (doc.components as { schemas: Record<string, object> }).schemas;
  for (const [name, schema] of Object.entries(schemas)) ajv.addSchema(schema, `#/components/schemas/${name}`);
  const check = async (
    role: Role,
    method: string,
    path: string,
    documented: string,
    options: { json?: unknown; headers?: Record<string, string>; token?: string | null } = {},
  ) => {
    const request = (op(documented, method.toLowerCase()) as { requestBody?: { content: Record<string, { schema: object }> } }).requestBody;
    if (options.json !== undefined)
      t.true(
        ajv.validate(request!.content['application/json']!.schema, options.json),
        `the documented request schema of ${method} ${documented} accepts a real request: ${ajv.errorsText()}`,
      );
    const res = await call(gw.url(role), path, { method, ...options });
    t.true(res.status < 400, `${method} ${path} answered ${res.status}: ${JSON.stringify(res.body).slice(0, 200)}`);
    const ok = op(documented, method.toLowerCase()).responses[String(res.status)] as
      { content?: Record<string, { schema: object }> } | undefined;
    t.truthy(ok, `${method} ${path} answered ${res.status}: ${JSON.stringify(res.body).slice(0, 200)}`);
    const schema = ok?.content?.['application/json']?.schema;
    if (schema) t.true(ajv.validate(schema, res.body), `${method} ${path}: ${ajv.errorsText()}`);
    return res;
  };
  for (const role of ROLES) {
    await check(role, 'GET', '/healthz', '/healthz', { token: null });
    await check(role, 'GET', '/readyz', '/readyz', { token: null });
  }
  await check('control', 'GET', '/.well-known/jwks.json', '/.well-known/jwks.json', { token: null });
  await check('control', 'POST', '/v1/data/cynode/register/decision', '/v1/data/{path}', {
    json: { input: { subject: { node_id: 'n1' } } },
  });
  const job = await check('control', 'POST', '/v1/jobs', '/v1/jobs', {
    json: { task_id: 't-doc', user_id: 'u-doc', payload: { kind: 'echo' } },
    headers: { 'idempotency-key': 'doc-1' },
  });
  await check('control', 'POST', '/v1/jobs', '/v1/jobs', {
    json: { task_id: 't-doc', user_id: 'u-doc', payload: { kind: 'echo' } },
    headers: { 'idempotency-key': 'doc-1' },
  });
  await check('control', 'GET', `/v1/jobs/${String((job.body as { id: string }).id)}`, '/v1/jobs/{id}');
  const psk = await check('control', 'POST', '/v1/psks', '/v1/psks', { json: { name: 'doc' } });
  await check('control', 'POST', '/register', '/register', {
    token: null,
    json: { node_id: 'doc-node-1', labels: ['local'], inference_mode: 'ollama_local' },
    headers: { 'x-cynode-psk': String((psk.body as { secret: string }).secret) },
  });
  await check('control', 'PUT', '/v1/preferences/user/u-doc/cloud_allowed', '/v1/preferences/{scope}/{id}/{key}', {
    json: { value: true },
  });
  await check('control', 'DELETE', '/v1/preferences/user/u-doc/cloud_allowed', '/v1/preferences/{scope}/{id}/{key}');
});

test('real refusals match the document: status and code listed for the operation', async (t) => {
  const cases: {
    role: Role;
    method: string;
    path: string;
    doc: string;
    body?: string;
    headers?: Record<string, string>;
    token?: string | null;
  }[] = [
    { role: 'control', method: 'GET', path: '/v1/status', doc: '/v1/status', token: null },
    { role: 'control', method: 'GET', path: '/v1/status', doc: '/v1/status', token: 'not-the-admin-token' },
    {
      role: 'control',
      method: 'POST',
      path: '/v1/jobs',
      doc: '/v1/jobs',
      body: '{"task_id":',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k1' },
    },
    {
      role: 'control',
      method: 'PUT',
      path: '/v1/settings/cloud_routing.enabled',
      doc: '/v1/settings/{key}',
      body: 'false',
      headers: { 'content-type': 'text/plain' },
    },
    { role: 'control', method: 'GET', path: '/v1/settings/no.such.setting', doc: '/v1/settings/{key}' },
    { role: 'control', method: 'GET', path: '/v1/jobs/00000000-0000-4000-8000-000000000000', doc: '/v1/jobs/{id}' },
    {
      role: 'control',
      method: 'POST',
      path: '/v1/data/not/an/entrypoint',
      doc: '/v1/data/{path}',
      body: '{"input":{}}',
      headers: { 'content-type': 'application/json' },
    },
    {
      role: 'control',
      method: 'POST',
      path: '/register',
      doc: '/register',
      body: '{"node_id":"n1"}',
      headers: { 'content-type': 'application/json', 'x-cynode-psk': 'wrong-psk-value' },
      token: null,
    },
    { role: 'control', method: 'GET', path: '/jobs', doc: '/jobs', token: null },
    { role: 'control', method: 'POST', path: '/result', doc: '/result', token: 'eyJhbGciOiJub25lIn0.e30.' },
    { role: 'control', method: 'GET', path: '/v1/bundles/other', doc: '/v1/bundles/{name}' },
    {
      role: 'control',
      method: 'PUT',
      path: '/v1/budgets/task/t1',
      doc: '/v1/budgets/{scope}/{id}',
      body: '{"limit_usd":-1}',
      headers: { 'content-type': 'application/json' },
    },
    { role: 'mcp', method: 'POST', path: '/mcp', doc: '/mcp', body: '{}', headers: { 'content-type': 'application/json' }, token: null },
    { role: 'mcp', method: 'GET', path: '/mcp', doc: '/mcp' },
    {
      role: 'egress',
      method: 'POST',
      path: '/v1/egress/call',
      doc: '/v1/egress/call',
      body: '{}',
      headers: { 'content-type': 'application/json' },
      token: null,
    },
  ];
  const seen = new Set<string>();
  for (const c of cases) {
    const res = await call<{ error?: { code?: string | number; data?: unknown } }>(gw.url(c.role), c.path, {
      method: c.method,
      token: c.token,
      headers: c.headers,
      ...(c.body !== undefined && { body: c.body }),
    });
    const documented = op(c.doc, c.method.toLowerCase()).responses[String(res.status)];
    t.truthy(documented, `${c.method} ${c.path} answered ${res.status}, not documented`);
    t.true(res.status >= 400 && res.status < 500, `${c.method} ${c.path} answered ${res.status}`);
    const code = res.body.error?.code;
    seen.add(`${res.status} ${String(code ?? '')}`);
    if (typeof code === 'string')
      t.true(documented?.['x-error-codes']?.includes(code), `${c.method} ${c.path}: ${code} not listed under ${res.status}`);
    else t.is(c.role, 'mcp', 'only MCP answers in JSON-RPC');
  }
  t.log([...seen].sort().join(', '));
  t.true(seen.size >= 10, 'the cases reach different refusals');
});
