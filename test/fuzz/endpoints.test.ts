import { randomInt } from 'node:crypto';
import test from 'ava';
import { FORWARD_TOKEN_HEADER, signForwardToken } from '../../src/final-gate/forward-token.js';
import { ENTRYPOINTS } from '../../src/policy/index.js';
import type { Role } from '../../src/server/roles.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import {
  fuzzRoutes,
  type FuzzRequest,
  type FuzzTarget,
  generate,
  judge,
  pool,
  type RouteSpec,
  seeded,
  send,
  sourceRoutes,
  tally,
  type Verdict,
} from '../helpers/fuzz.js';
import { call, eventually } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';
import { createPsk, poll, registerWorker, submitJob } from '../helpers/workers.js';

// One seed drives every generated request; CYNODE_FUZZ_SEED replays a run.
const SEED = Number(process.env.CYNODE_FUZZ_SEED ?? randomInt(2 ** 31));
const COUNT = Number(process.env.CYNODE_FUZZ_COUNT ?? 10_000);
const CONCURRENCY = 16;

const ENV = {
  CYNODE_PSK_FAILURE_LIMIT: '10000', // the fuzzer's wrong PSKs must not lock out its valid ones
  CYNODE_JOB_LONG_POLL_MAX_MS: '100',
};

let gw: BootedGateway;
let fake: FakeProvider;
let target: FuzzTarget;
let routes: RouteSpec[];
const logs = captureLogger();
const processErrors: string[] = [];
const onProcessError = (err: unknown) => processErrors.push(String((err as Error)?.stack ?? err));

test.before(async () => {
  process.on('uncaughtException', onProcessError);
  process.on('unhandledRejection', onProcessError);
  fake = await startFakeProvider();
  gw = await bootGateway({
    env: { CYNODE_OPENAI_BASE_URL: fake.url, CYNODE_ANTHROPIC_BASE_URL: fake.url, ...ENV },
    roles: ['control', 'mcp', 'egress'],
    logger: logs.logger,
  });
  const base = gw.url('control');
  const credential = await call<{ id: string }>(base, '/v1/credentials', {
    json: { provider: 'openai', name: 'main', secret: 'sk-fuzz-0123456789abcdef' },
  });
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  await call(base, '/v1/budgets/task/task-fuzz', { method: 'PUT', json: { limit_usd: 5 } });
  const psk = await createPsk(base, 'fuzz');
  const worker = await registerWorker(base, psk.secret, { node_id: 'fuzz-main-01' });
  const spare = await registerWorker(base, psk.secret, { node_id: 'fuzz-spare-01' });
  const job = String(
    (await submitJob(base, { task_id: 'task-fuzz', user_id: 'user-f', requirements: { labels: ['cloud'] }, payload: { kind: 'api.call' } }))
      .body.id,
  );
  let leaseId = '';
  await eventually(async () => {
    leaseId = (await poll(base, worker)).body.jobs.find((j) => j.job_id === job)?.lease_id ?? '';
    return leaseId !== '';
  }, 10_000);
  // A job already cancelled: cancelling it again reaches the handler (job_finished) whatever else the run does.
  const finished = String((await submitJob(base, { task_id: 'task-fuzz-done', user_id: 'user-f', payload: { kind: 'echo' } })).body.id);
  await call(base, `/v1/jobs/${finished}/cancel`, { method: 'POST', json: {} });
  const decision = await call<{ decision_id: string }>(base, '/v1/data/cynode/register/decision', {
    json: { input: { action: 'register' } },
  });
  const signIn = await fetch(`${base}/console/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: TEST_ADMIN_TOKEN }),
  });
  const consoleCookie = (signIn.headers.get('set-cookie') ?? '').split(';')[0]!;
  if (signIn.status !== 201 || !consoleCookie.includes('=')) throw new Error(`console sign-in answered ${signIn.status}`);
  const port = (role: Role) => gw.gateway.listening.find((l) => l.role === role)!.port;
  target = {
    ports: { control: port('control'), mcp: port('mcp'), egress: port('egress') },
    adminToken: TEST_ADMIN_TOKEN,
    workerToken: worker.token,
    spareWorkerToken: spare.token,
    psk: psk.secret,
    consoleCookie,
    ids: {
      jobId: job,
      finishedJobId: finished,
      leaseId,
      credentialId: credential.body.id,
      pskId: psk.id,
      decisionId: decision.body.decision_id,
      taskId: 'task-fuzz',
    },
    maxBodyBytes: gw.config.server.maxBodyBytes,
    // What the control plane would have decided for a direct call on the fuzz task.
    signForward: (body) =>
      signForwardToken(
        gw.gateway.keys.current(),
        {
          issuer: 'cynode-gateway',
          audience: 'cynode-egress',
          subject: 'orchestrator:admin',
          entrypoint: ENTRYPOINTS.apiCall,
          input: forwardInput,
          revision: 'fuzz',
        },
        body,
        30_000,
      ),
  };
  routes = fuzzRoutes(gw.gateway.routes).routes;
});

test.after.always(async () => {
  await gw?.stop();
  await fake?.close();
  process.off('uncaughtException', onProcessError);
  process.off('unhandledRejection', onProcessError);
});

const forwardInput = {
  action: 'api.call',
  subject: { kind: 'orchestrator', id: 'admin', labels: [] },
  resource: { provider: 'openai', operation: 'chat.completions', model: 'gpt-4o-mini', stream: false, estimated_cost_usd: 0.00001 },
  context: {
    task_id: 'task-fuzz',
    job_id: null,
    user_id: null,
    project_id: null,
    group_id: null,
    region: 'local',
    preferences: { cloud_allowed: true },
    requirements: {},
    budget: { task: { limit_usd: 5, spent_usd: 0, reserved_usd: 0, remaining_usd: 5 }, user: null, subject: null },
  },
};
const describe = (req: FuzzRequest) => `${req.role} ${req.method} ${req.target.slice(0, 120)} [${req.mutations.join(',')}]`;

/** Sends requests with bounded concurrency and returns each with its verdict. */
async function fire(requests: readonly FuzzRequest[]): Promise<{ req: FuzzRequest; verdict: Verdict }[]> {
  return pool(requests, CONCURRENCY, async (req) => {
    const signed = req.signForward
      ? {
          ...req,
          headers: [...req.headers, [FORWARD_TOKEN_HEADER, await target.signForward(req.body ?? Buffer.alloc(0))] as [string, string]],
        }
      : req;
    return { req, verdict: judge(req, await send(target.ports[req.role], signed)) };
  });
}

test.serial('the fuzzer covers every route each role serves, and every route the source declares', (t) => {
  const { routes: fuzzed, added } = fuzzRoutes(gw.gateway.routes);
  t.deepEqual(added, [], 'a served route has no entry in test/helpers/fuzz.ts ROUTES (it is fuzzed generically meanwhile)');
  const fuzzedKeys = new Set(fuzzed.map((r) => `${r.method} ${r.path}`));
  const missing = sourceRoutes().filter((s) => !fuzzedKeys.has(`${s.method} ${s.path}`));
  t.deepEqual(missing, [], 'a router call in src/ is not fuzzed');
  t.true(fuzzed.length >= 45, `${fuzzed.length} routes`);
});

test.serial(`${COUNT} malformed requests on every port: no 5xx, every refusal with a stable code`, async (t) => {
  t.log(`seed ${SEED} (replay with CYNODE_FUZZ_SEED=${SEED})`);
  const requests = generate(SEED, COUNT, routes, target);
  const started = Date.now();
  const results = await fire(requests);
  const ms = Date.now() - started;
  const problems = results.filter((r) => r.verdict.problem);
  t.log(`${results.length} requests in ${ms} ms (${Math.round((results.length * 1000) / ms)}/s, concurrency ${CONCURRENCY})`);
  t.log('by status', tally(results.map((r) => String(r.verdict.status))));
  t.log('by code', tally(results.map((r) => r.verdict.code)));
  t.log('by mutation', tally(results.flatMap((r) => r.req.mutations)));
  for (const p of problems.slice(0, 15))
    t.log(`PROBLEM ${JSON.stringify(p.verdict.problem)} (${p.verdict.status} ${p.verdict.code}): ${describe(p.req)}`);
  if (problems.length > 0)
    for (const l of logs.lines.filter((x) => /"level":"(warn|error|fatal)"/.test(x)).slice(0, 10)) t.log(l.slice(0, 1500));
  t.is(problems.length, 0, `${problems.length} answers broke the contract`);
  t.is(results.filter((r) => r.verdict.status >= 500 || r.verdict.status === 0).length, 0);

  // Every route was hit, and valid credentials carried requests past authentication into the handler.
  const perRoute = new Map<string, Verdict[]>();
  for (const { req, verdict } of results) perRoute.set(req.route, [...(perRoute.get(req.route) ?? []), verdict]);
  for (const spec of routes) {
    const verdicts = perRoute.get(`${spec.method} ${spec.path}`) ?? [];
    t.true(verdicts.length > 0, `${spec.method} ${spec.path} was never fuzzed`);
    const reached = verdicts.filter((v) => v.status < 500 && ![401, 404, 405].includes(v.status));
    t.true(reached.length > 0, `no request reached the handler of ${spec.method} ${spec.path}`);
  }
});

test.serial('bodies over the limit are refused with 413 payload_too_large on every POST and PUT route', async (t) => {
  const writes = routes.filter((r) => ['POST', 'PUT', 'ALL'].includes(r.method) && !r.generic);
  const fill = (path: string, spec: RouteSpec) =>
    path.replace(/:(\w+)|\*/g, (_, name: string | undefined) => spec.params?.[name ?? '*']?.(target)[0] ?? 'x');
  const auth = (spec: RouteSpec): [string, string][] =>
    spec.auth === 'psk'
      ? [['x-cynode-psk', target.psk]]
      : spec.auth === 'forward' || spec.auth === 'none'
        ? []
        : [['authorization', `Bearer ${spec.auth === 'admin' ? target.adminToken : target.workerToken}`]];
  // A declared length is refused on every route; a streamed (chunked) body is refused where it is
  // read. The few routes that read no body (key rotation, cancel, disable) let Node discard it unread.
  const requests = writes.flatMap((spec) =>
    (spec.body ? [false, true] : [false]).map((chunked): FuzzRequest => ({
      role: spec.role,
      method: spec.method === 'ALL' ? 'POST' : spec.method,
      target: fill(spec.path, spec),
      headers: [
        ...auth(spec),
        ['content-type', 'application/json'],
        ...(spec.role === 'mcp' ? [['accept', 'application/json, text/event-stream'] as [string, string]] : []),
      ],
      body: Buffer.from(`{"value":"${'a'.repeat(target.maxBodyBytes)}"}`),
      chunked,
      route: `${spec.method} ${spec.path}`,
      mutations: [chunked ? 'chunked' : 'content-length'],
    })),
  );
  const results = await pool(requests, 4, async (req) => ({ req, res: await send(target.ports[req.role], req) }));
  const wrong = results.filter(({ req, res }) => res.status !== 413 || judge(req, res).code !== 'payload_too_large');
  for (const { req, res } of wrong)
    t.log(`NOT 413: ${req.route} (${req.mutations[0]}) -> ${res.status} ${res.body.toString('utf8').slice(0, 200)}`);
  t.log(`${results.length} oversized bodies (${writes.length} routes, declared and chunked), limit ${target.maxBodyBytes} bytes`);
  t.is(wrong.length, 0);
  t.true(writes.length >= 18);
});

test.serial(
  'NUL, unpaired surrogates and deep nesting are refused at the door of every body route, and the decision log keeps flowing',
  async (t) => {
    const bodies = routes.filter((r) => r.body && !r.generic && r.mediaType === undefined);
    const poisons: [string, (text: string) => string][] = [
      ['nul', (text) => text.replace(/"([^"]*)"(?=[,}\]])/, '"$1\\u0000"')],
      ['surrogate', (text) => text.replace(/"([^"]*)"(?=[,}\]])/, '"$1\\ud800"')],
      ['deep', (text) => text.replace(/:("[^"]*"|-?\d+|true|false|null)/, `:${'['.repeat(20_000)}1${']'.repeat(20_000)}`)],
    ];
    const requests = bodies.flatMap((spec) =>
      poisons
        .map(([label, poison]): FuzzRequest | undefined => {
          const valid = JSON.stringify(spec.body!(target, seeded(1)));
          // A poison needs a place to go: a string for NUL and surrogates, any value for nesting.
          if (poison(valid) === valid) return undefined;
          return {
            role: spec.role,
            method: spec.method === 'ALL' ? 'POST' : spec.method,
            target: spec.path.replace(/:(\w+)|\*/g, (_, name: string | undefined) => spec.params?.[name ?? '*']?.(target)[0] ?? 'x'),
            headers: [
              ...(spec.auth === 'psk'
                ? [['x-cynode-psk', target.psk] as [string, string]]
                : spec.auth === 'forward'
                  ? []
                  : [['authorization', `Bearer ${spec.auth === 'admin' ? target.adminToken : target.workerToken}`] as [string, string]]),
              ['content-type', 'application/json'],
              ...(spec.role === 'mcp' ? [['accept', 'application/json, text/event-stream'] as [string, string]] : []),
            ],
            body: Buffer.from(poison(valid)),
            route: `${spec.method} ${spec.path}`,
            mutations: [label],
          };
        })
        .filter((r) => r !== undefined),
    );
    const results = await pool(requests, CONCURRENCY, async (req) => {
      // The egress role gets a valid forward token for the poisoned bytes: its own door must refuse them too.
      const signed =
        req.role === 'egress'
          ? { ...req, headers: [...req.headers, [FORWARD_TOKEN_HEADER, await target.signForward(req.body!)] as [string, string]] }
          : req;
      return { req, res: await send(target.ports[req.role], signed) };
    });
    const summary = results.map(
      ({ req, res }) =>
        `${req.route} ${req.mutations[0]} -> ${res.status} ${/"code":"([^"]+)"/.exec(res.body.toString('utf8'))?.[1] ?? ''}`,
    );
    t.log(tally(results.map(({ req, res }) => `${req.mutations[0]} ${res.status}`)));
    const refused = results.filter(({ res }) => res.status === 400);
    for (const s of summary.filter((_, i) => !refused.includes(results[i]!))) t.log(`NOT REFUSED: ${s}`);
    t.is(refused.length, results.length);
    t.deepEqual(results.map(({ req, res }) => judge(req, res).problem).filter(Boolean), [], 'each refusal carries its stable code');
    await t.notThrowsAsync(gw.gateway.decisionLog.flush(), 'the decision log writes its buffer');
    const decision = await call<{ decision_id: string }>(gw.url('control'), '/v1/data/cynode/register/decision', {
      json: { input: { action: 'register' } },
    });
    t.is((await call(gw.url('control'), `/v1/decisions/${decision.body.decision_id}`)).status, 200);
  },
);

test.serial('bytes the HTTP parser refuses get a JSON refusal, never a crash', async (t) => {
  const raw = (role: Role, method: string, target: string, headers: [string, string][] = [], label = 'raw'): FuzzRequest => ({
    role,
    method,
    target,
    headers,
    route: 'parser',
    mutations: [label],
  });
  const requests: FuzzRequest[] = (['control', 'mcp', 'egress'] as const).flatMap((role) => [
    raw(role, 'GET', '/healthz', [['x-nul', 'a\u0000b']], 'nul-in-header'),
    raw(role, 'GET', '/healthz', [['x-huge', 'h'.repeat(40_000)]], 'header-overflow'),
    raw(role, 'GET', '/v1/status x', [], 'space-in-target'),
    raw(role, 'GET', '/v1/\u0001status', [], 'control-char-in-target'),
    raw(role, 'FOO', '/healthz', [], 'unknown-method'),
    raw(role, 'GET', '/healthz', [['bad header', 'x']], 'bad-header-name'),
    raw(
      role,
      'POST',
      '/v1/jobs',
      [
        ['content-length', '5'],
        ['content-length', '6'],
      ],
      'double-content-length',
    ),
    raw(role, 'POST', '/v1/jobs', [['content-length', '-1']], 'negative-content-length'),
    raw(role, 'POST', '/v1/jobs', [['transfer-encoding', 'chunked, gzip']], 'bad-transfer-encoding'),
  ]);
  const results = await pool(requests, CONCURRENCY, async (req) => ({
    req,
    verdict: judge(req, await send(target.ports[req.role], req, 5000)),
  }));
  t.log('parser refusals', tally(results.map((r) => `${r.req.mutations[0]} ${r.verdict.status} ${r.verdict.code}`)));
  for (const r of results.filter((x) => x.verdict.problem)) t.log(`PROBLEM ${r.verdict.problem}: ${describe(r.req)}`);
  t.is(results.filter((r) => r.verdict.problem).length, 0);
});

test.serial('afterwards the gateway is alive, serves real requests and logged no unhandled error', async (t) => {
  for (const role of ['control', 'mcp', 'egress'] as const) {
    t.is((await call(gw.url(role), '/healthz', { token: null })).status, 200);
    t.is((await call(gw.url(role), '/readyz', { token: null })).status, 200);
  }
  const base = gw.url('control');
  t.is((await call(base, '/v1/status')).status, 200);
  // The fuzzer may have pulled the kill switch or changed preferences with its valid admin token.
  t.is((await call(base, '/v1/settings/cloud_routing.enabled', { method: 'PUT', json: { value: true } })).status, 200);
  t.is((await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } })).status, 200);
  const submitted = await submitJob(base, { task_id: 'task-after', user_id: 'user-after', requirements: { models: ['after-model'] } });
  t.is(submitted.status, 201);
  const psk = await createPsk(base, 'after');
  const worker = await registerWorker(base, psk.secret, {
    node_id: 'fuzz-after-01',
    supported_models: ['after-model'],
    max_concurrency: 1024,
  });
  // Jobs the fuzzer queued without requirements may come first: room for all of them.
  await eventually(
    async () => (await poll(base, worker, { max_jobs: 1024 })).body.jobs.some((j) => j.job_id === submitted.body.id),
    10_000,
  );
  const errors = logs.lines.filter((l) => {
    const line = JSON.parse(l) as { level: string; msg: string };
    return line.level === 'error' || line.level === 'fatal' || /unhandled/i.test(line.msg);
  });
  for (const e of errors.slice(0, 10)) t.log(e.slice(0, 500));
  t.is(errors.length, 0, 'the gateway logged errors');
  t.deepEqual(processErrors, []);
});
