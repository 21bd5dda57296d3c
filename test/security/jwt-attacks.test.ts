import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { PassThrough } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { decodeJwt, decodeProtectedHeader, type JWK } from 'jose';
import { type ArtifactServer, startArtifactServer } from '../../src/artifacts/server.js';
import { createFinalGate, FORWARD_TOKEN_HEADER, type FinalGate, signForwardToken } from '../../src/final-gate/index.js';
import { MAX_CLOCK_SKEW_S } from '../../src/keys/index.js';
import { STDIO_TOKEN_META, stdioBoundBody } from '../../src/mcp/index.js';
import { ENTRYPOINTS } from '../../src/policy/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { eventually } from '../helpers/http.js';
import { type Attack, type AttackBase, jwtAttacks, sign } from '../helpers/jwt-attacks.js';
import { captureLogger } from '../helpers/start.js';
import { SEED_WORKER } from '../helpers/fixtures.js';
import { pskId, pskSecretPart } from '../helpers/workers.js';

/*
 * The JWT attack set on every authenticated surface of a running gateway (control plane, MCP
 * gateway, API Egress, an upstream tool server running the final gate), then a scan of
 * everything the gateway said, logged and stored for the secrets it was handed.
 */

const PROVIDER_KEY = `sk-sec-${randomBytes(24).toString('hex')}`;
const MASTER_KEY = randomBytes(32);
const BUNDLE_READER_TOKEN = `bundle-reader-${randomBytes(16).toString('hex')}`;
const ARTIFACTS_AUDIENCE = 'mcp-upstream:artifacts';
const MCP_ACCEPT = 'application/json, text/event-stream';

let gw: BootedGateway;
let fake: FakeProvider;
let gate: FinalGate;
let artifacts: ArtifactServer;
const logs = captureLogger();

/** Every exchange with the gateway and the upstream, for the secrets scan; `issued` lists the secrets an answer exists to hand out. */
const exchanges: { what: string; status: number; headers: string; body: string; issued: string[] }[] = [];
/** Every token the gateway issued, and every token crafted here. */
const issuedTokens = new Set<string>();
const craftedTokens = new Set<string>();
let psk = '';
let worker = { nodeId: 'cloud-us-east-1-01', token: '' };
let agentToken = '';
let jobId = '';
let leaseId = '';
let publicJwk: JWK;

interface Sent {
  status: number;
  body: any;
  headers: Headers;
}

/** One HTTP request, its answer kept for the secrets scan. */
async function send(
  url: string,
  init: { method?: string; token?: string | null; headers?: Record<string, string>; json?: unknown; body?: string } = {},
): Promise<Sent> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers['content-type'] ??= 'application/json';
  }
  const method = init.method ?? (body === undefined ? 'GET' : 'POST');
  const res = await fetch(url, { method, headers, body });
  const text = await res.text();
  exchanges.push({ what: `${method} ${url}`, status: res.status, headers: JSON.stringify([...res.headers]), body: text, issued: [] });
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** Marks the last answer as the one that hands out `secret` (a PSK, a JWT): it alone may hold it. */
const handedOut = (secret: string) => {
  exchanges.at(-1)!.issued.push(secret);
  return secret;
};

/** The stable code of a refusal, in the gateway's shape or the JSON-RPC shape of the upstream. */
const codeOf = (body: any): unknown => (typeof body?.error?.code === 'string' ? body.error.code : body?.error?.data?.code);

const control = (path: string) => `${gw.url('control')}${path}`;
const mcpUrl = () => `${gw.url('mcp')}/mcp`;
const egressUrl = () => `${gw.url('egress')}/v1/egress/call`;

/** A loopback port held by a placeholder listener (so no outgoing connection takes it) until released. */
const reservePort = () =>
  new Promise<{ port: number; release: () => Promise<void> }>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      resolve({ port: (s.address() as { port: number }).port, release: () => new Promise((r) => s.close(() => r())) });
    });
  });

const rpc = (method: string, params: Record<string, unknown> = {}) => ({ jsonrpc: '2.0', id: randomUUID(), method, params });
const apiCallBody = (task: string, job: string | undefined) => ({
  provider: 'openai',
  operation: 'chat.completions',
  task_id: task,
  ...(job && { job_id: job }),
  params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 8 },
});

test.before(async () => {
  fake = await startFakeProvider();
  const { port, release } = await reservePort();
  gw = await bootGateway({
    env: {
      CYNODE_OPENAI_BASE_URL: fake.url,
      CYNODE_MCP_UPSTREAMS: `artifacts=http://127.0.0.1:${port}/mcp`,
      CYNODE_MASTER_KEY: MASTER_KEY.toString('base64'),
      CYNODE_BUNDLE_SERVICE_TOKEN: BUNDLE_READER_TOKEN,
    },
    roles: ['control', 'mcp', 'egress'],
    logger: logs.logger,
  });
  gate = createFinalGate({
    gatewayUrl: gw.url('control'),
    audience: ARTIFACTS_AUDIENCE,
    bundleToken: BUNDLE_READER_TOKEN,
    logger: logs.logger,
  });
  await gate.ready;
  await release();
  artifacts = await startArtifactServer({
    knex: gw.gateway.db.knex,
    gate,
    logger: logs.logger,
    host: '127.0.0.1',
    port,
    maxBodyBytes: 1_048_576,
  });
  const admin = TEST_ADMIN_TOKEN;
  const credential = await send(control('/v1/credentials'), {
    token: admin,
    json: { provider: 'openai', name: 'main', secret: PROVIDER_KEY },
  });
  if (credential.status !== 201) throw new Error(`credential not stored: ${credential.status}`);
  await send(control('/v1/preferences/system/default/cloud_allowed'), { method: 'PUT', token: admin, json: { value: true } });
  for (const task of ['task-s', 'task-fwd', 'task-r'])
    await send(control(`/v1/budgets/task/${task}`), { method: 'PUT', token: admin, json: { limit_usd: 5 } });
  const created = await send(control('/v1/psks'), { token: admin, json: { name: 'security' } });
  psk = handedOut(String(created.body.secret));
  const registered = await send(control('/register'), { headers: { 'x-cynode-psk': psk }, json: { ...SEED_WORKER, max_concurrency: 4 } });
  worker = { nodeId: SEED_WORKER.node_id, token: handedOut(String(registered.body.token)) };
  issuedTokens.add(worker.token);
  const job = await send(control('/v1/jobs'), {
    token: admin,
    headers: { 'idempotency-key': randomUUID() },
    json: { task_id: 'task-s', user_id: 'user-s', requirements: { labels: ['cloud'] }, payload: { kind: 'api.call' } },
  });
  jobId = String(job.body.id);
  await eventually(async () => {
    const polled = await send(control('/jobs/poll'), { token: worker.token, json: {} });
    const mine = (polled.body.jobs as { job_id: string; lease_id: string }[]).find((j) => j.job_id === jobId);
    if (mine) leaseId = mine.lease_id;
    return mine !== undefined;
  }, 10_000);
  const agent = await send(control('/v1/agent-tokens'), { token: worker.token, json: { agent_type: 'pm', job_id: jobId } });
  agentToken = handedOut(String(agent.body.token));
  issuedTokens.add(agentToken);
  publicJwk = ((await send(control('/.well-known/jwks.json'))).body as { keys: JWK[] }).keys.find(
    (k) => k.kid === gw.gateway.keys.current().kid,
  )!;
});

test.after.always(async () => {
  await artifacts?.close();
  gate?.close();
  await gw?.stop();
  await fake?.close();
});

const base = (genuine: string): AttackBase => ({ genuine, gatewayKey: gw.gateway.keys.current(), publicJwk });

/** Runs every attack against one surface; each must be refused with `status` and the stable code, and never echoed. */
async function refuseAll(
  t: ExecutionContext,
  surface: string,
  attacks: Attack[],
  attempt: (token: string) => Promise<Sent>,
  expect: { status: number; invalid: string; expired?: string },
): Promise<number> {
  for (const attack of attacks) {
    craftedTokens.add(attack.token);
    const res = await attempt(attack.token);
    const code = attack.expired && expect.expired ? expect.expired : expect.invalid;
    t.is(res.status, expect.status, `${surface}: ${attack.name} (${JSON.stringify(res.body).slice(0, 200)})`);
    t.is(codeOf(res.body), code, `${surface}: ${attack.name}`);
  }
  return attacks.length;
}

const WORKER_REFUSAL = { status: 401, invalid: 'token_invalid', expired: 'token_expired' };

/** The worker-JWT surfaces of the control plane: path, method and a body a leasing worker would send. */
const workerSurfaces = () =>
  [
    ['GET /jobs', (token: string) => send(control('/jobs'), { method: 'GET', token })],
    ['POST /jobs/poll', (token: string) => send(control('/jobs/poll'), { token, json: {} })],
    [
      'POST /status',
      (token: string) => send(control('/status'), { token, json: { health: { ok: true }, jobs: [{ job_id: jobId, lease_id: leaseId }] } }),
    ],
    [
      'POST /result',
      (token: string) =>
        send(control('/result'), { token, json: { job_id: jobId, lease_id: leaseId, status: 'succeeded', result: { stolen: true } } }),
    ],
    [
      'POST /v1/agent-tokens',
      (token: string) => send(control('/v1/agent-tokens'), { token, json: { agent_type: 'sandbox', job_id: jobId } }),
    ],
    ['POST /v1/api/call', (token: string) => send(control('/v1/api/call'), { token, json: apiCallBody('task-s', jobId) })],
    ['POST /mcp', (token: string) => send(mcpUrl(), { token, headers: { accept: MCP_ACCEPT }, json: rpc('tools/list') })],
  ] as const;

/** A forward token the gateway would send API Egress for `body`, and the matching input. */
function egressClaims(audience = 'cynode-egress') {
  const input = {
    action: 'api.call',
    subject: { kind: 'orchestrator', id: 'admin', labels: [] },
    resource: { provider: 'openai', operation: 'chat.completions', model: 'gpt-4o-mini', stream: false, estimated_cost_usd: 0.00001 },
    context: {
      task_id: 'task-fwd',
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
  return {
    issuer: 'cynode-gateway',
    audience,
    subject: 'orchestrator:admin',
    entrypoint: ENTRYPOINTS.apiCall,
    input,
    revision: 'test-suite',
  };
}
const egressBody = () =>
  JSON.stringify({
    request_id: randomUUID(),
    provider: 'openai',
    operation: 'chat.completions',
    params: apiCallBody('task-fwd', undefined).params,
  });
const sendEgress = (body: string, token: string | undefined) =>
  send(egressUrl(), {
    body,
    headers: { 'content-type': 'application/json', ...(token !== undefined && { [FORWARD_TOKEN_HEADER]: token }) },
  });

/** A forward token the MCP gateway would send the artifact server for a tools/call `body`. */
function artifactClaims(audience = ARTIFACTS_AUDIENCE) {
  const input = {
    action: 'mcp.tool.invoke',
    subject: { kind: 'worker', node_id: worker.nodeId, labels: ['cloud'], agent_type: 'worker' },
    resource: { tool: 'artifacts.artifact_list', server: 'artifacts', name: 'artifact_list' },
    context: { task_id: 'task-s', job_id: jobId, lease_active: true, arguments: { task_id: 'task-s' } },
  };
  return {
    issuer: 'cynode-gateway',
    audience,
    subject: `mcp:${worker.nodeId}`,
    entrypoint: ENTRYPOINTS.mcpToolInvoke,
    input,
    revision: 'test-suite',
  };
}
const artifactBody = () => JSON.stringify(rpc('tools/call', { name: 'artifact_list', arguments: { task_id: 'task-s' } }));
const sendArtifact = (body: string, token: string | undefined) =>
  send(artifacts.url, {
    body,
    headers: { 'content-type': 'application/json', accept: MCP_ACCEPT, ...(token !== undefined && { [FORWARD_TOKEN_HEADER]: token }) },
  });

test.serial('the genuine tokens work on every surface (so each refusal below is the token being refused)', async (t) => {
  for (const [name, attempt] of workerSurfaces()) {
    if (name === 'POST /result') continue; // would finish the job the other checks need
    const res = await attempt(worker.token);
    if (typeof res.body?.token === 'string') issuedTokens.add(handedOut(res.body.token as string));
    t.true(
      res.status < 400 || ['job_not_leased', 'policy_denied'].includes(String(codeOf(res.body))),
      `${name}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`,
    );
    t.not(res.status, 401, name);
  }
  const asAgent = await send(mcpUrl(), { token: agentToken, headers: { accept: MCP_ACCEPT }, json: rpc('tools/list') });
  t.is(asAgent.status, 200);
  const body = egressBody();
  const egress = await sendEgress(body, await signForwardToken(gw.gateway.keys.current(), egressClaims(), body, 10_000));
  t.is(egress.status, 200, JSON.stringify(egress.body));
  const call = artifactBody();
  const upstream = await sendArtifact(call, await signForwardToken(gw.gateway.keys.current(), artifactClaims(), call, 10_000));
  t.is(upstream.status, 200, JSON.stringify(upstream.body));
  t.is((await send(control('/v1/status'), { token: TEST_ADMIN_TOKEN })).status, 200);
  // The JWKS the targets trust publishes public halves only.
  const jwks = (await send(control('/.well-known/jwks.json'))).body as { keys: Record<string, unknown>[] };
  t.true(jwks.keys.length > 0);
  for (const k of jwks.keys)
    t.deepEqual(
      ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'].filter((member) => member in k),
      [],
      `no private member in ${String(k.kid)}`,
    );
});

test.serial(
  'a token issued a little ahead of this clock (replica skew, within MAX_CLOCK_SKEW_S) is still accepted; further ahead it is not',
  async (t) => {
    const key = gw.gateway.keys.current();
    const claims = decodeJwt(worker.token) as Record<string, unknown>;
    const at = (aheadS: number) => {
      const iat = Math.floor(Date.now() / 1000) + aheadS;
      return sign(key.privateKey, decodeProtectedHeader(worker.token) as Record<string, unknown>, { ...claims, iat, exp: iat + 600 });
    };
    const near = await at(MAX_CLOCK_SKEW_S - 2);
    craftedTokens.add(near);
    t.is((await send(control('/jobs/poll'), { token: near, json: {} })).status, 200);
    const far = await at(MAX_CLOCK_SKEW_S + 5);
    craftedTokens.add(far);
    const refused = await send(control('/jobs/poll'), { token: far, json: {} });
    t.is(refused.status, 401);
    t.is(codeOf(refused.body), 'token_invalid');
  },
);

test.serial('worker API, /v1/api/call and /mcp refuse every forged, tampered or misused worker token', async (t) => {
  const attacks = await jwtAttacks(base(worker.token));
  let sent = 0;
  const started = Date.now();
  for (const [name, attempt] of workerSurfaces()) sent += await refuseAll(t, name, attacks, attempt, WORKER_REFUSAL);
  t.log(`${attacks.length} attacks x ${workerSurfaces().length} surfaces = ${sent} refused in ${Date.now() - started} ms`);
  // Only the Authorization header carries a token: not a query parameter, a cookie or another header
  // (and a token put in the URL is not logged either: the scan below would find it).
  for (const [path, headers] of [
    [`/jobs/poll?access_token=${worker.token}`, {}],
    ['/jobs/poll', { cookie: `token=${worker.token}` }],
    ['/jobs/poll', { 'x-cynode-token': worker.token }],
    ['/jobs/poll', { [FORWARD_TOKEN_HEADER]: worker.token }],
  ] as [string, Record<string, string>][]) {
    const res = await send(control(path), { headers, json: {} });
    t.is(res.status, 401, path);
    t.is(codeOf(res.body), 'unauthorized');
  }
  // The token itself still works: nothing above was refused for a reason other than the token.
  t.is((await send(control('/jobs/poll'), { token: worker.token, json: {} })).status, 200);
});

test.serial('/mcp refuses every forged, tampered or misused agent token', async (t) => {
  const attacks = await jwtAttacks(base(agentToken));
  await refuseAll(
    t,
    'POST /mcp (agent)',
    attacks,
    (token) => send(mcpUrl(), { token, headers: { accept: MCP_ACCEPT }, json: rpc('tools/list') }),
    WORKER_REFUSAL,
  );
  t.is((await send(mcpUrl(), { token: agentToken, headers: { accept: MCP_ACCEPT }, json: rpc('tools/list') })).status, 200);
});

test.serial('tokens of one kind are refused where another kind is required', async (t) => {
  const egressBodyText = egressBody();
  const egressToken = await signForwardToken(gw.gateway.keys.current(), egressClaims(), egressBodyText, 10_000);
  const artifactBodyText = artifactBody();
  const artifactToken = await signForwardToken(gw.gateway.keys.current(), artifactClaims(), artifactBodyText, 10_000);
  for (const token of [egressToken, artifactToken]) craftedTokens.add(token);
  const misuse = (tokens: Record<string, string>): Attack[] => Object.entries(tokens).map(([name, token]) => ({ name, token }));

  // An agent token reaches the MCP gateway only; forward tokens are for target services only.
  const notWorker = misuse({
    'agent token': agentToken,
    'egress forward token': egressToken,
    'upstream forward token': artifactToken,
    'bundle reader token': BUNDLE_READER_TOKEN,
  });
  for (const [name, attempt] of workerSurfaces()) {
    const attacks = name === 'POST /mcp' ? notWorker.filter((a) => a.token !== agentToken) : notWorker;
    await refuseAll(t, name, attacks, attempt, WORKER_REFUSAL);
    if (name !== 'POST /v1/api/call') await refuseAll(t, name, misuse({ 'admin token': TEST_ADMIN_TOKEN }), attempt, WORKER_REFUSAL);
  }

  // Type confusion under the gateway's own signature: one kind's claims under the other's typ and aud.
  const key = gw.gateway.keys.current();
  const workerClaims = decodeJwt(worker.token) as Record<string, unknown>;
  const agentClaims = decodeJwt(agentToken) as Record<string, unknown>;
  const confused = [
    {
      name: 'worker claims under the agent typ',
      token: await sign(key.privateKey, { typ: 'cynode-agent+jwt', kid: key.kid }, workerClaims),
    },
    {
      name: 'worker claims under the agent typ and aud',
      token: await sign(key.privateKey, { typ: 'cynode-agent+jwt', kid: key.kid }, { ...workerClaims, aud: 'cynode-mcp' }),
    },
    {
      name: 'agent claims under the worker typ',
      token: await sign(key.privateKey, { typ: 'cynode-worker+jwt', kid: key.kid }, agentClaims),
    },
    {
      name: 'agent claims under the forward typ',
      token: await sign(key.privateKey, { typ: 'cynode-forward+jwt', kid: key.kid }, agentClaims),
    },
  ];
  for (const [name, attempt] of workerSurfaces()) await refuseAll(t, name, confused, attempt, WORKER_REFUSAL);

  // API Egress takes only a forward token addressed to it, for this body.
  const forEgress = egressBody();
  const crossAudience = await signForwardToken(gw.gateway.keys.current(), egressClaims(ARTIFACTS_AUDIENCE), forEgress, 10_000);
  craftedTokens.add(crossAudience);
  await refuseAll(
    t,
    'egress',
    misuse({
      'worker token': worker.token,
      'agent token': agentToken,
      'admin token': TEST_ADMIN_TOKEN,
      'upstream-audience forward token': crossAudience,
      'upstream forward token': artifactToken,
    }),
    (token) => sendEgress(forEgress, token),
    { status: 401, invalid: 'forward_token_invalid' },
  );
  const otherAction = await signForwardToken(
    gw.gateway.keys.current(),
    { ...egressClaims(), entrypoint: ENTRYPOINTS.mcpToolInvoke },
    forEgress,
    10_000,
  );
  craftedTokens.add(otherAction);
  await refuseAll(
    t,
    'egress',
    misuse({ 'egress-audience token for another action': otherAction }),
    (token) => sendEgress(forEgress, token),
    { status: 401, invalid: 'forward_token_invalid' },
  );
  const missing = await sendEgress(forEgress, undefined);
  t.is(missing.status, 401);
  t.is(codeOf(missing.body), 'forward_token_invalid');

  // The upstream takes only a forward token addressed to it.
  const forUpstream = artifactBody();
  const egressAudience = await signForwardToken(gw.gateway.keys.current(), artifactClaims('cynode-egress'), forUpstream, 10_000);
  craftedTokens.add(egressAudience);
  await refuseAll(
    t,
    'artifact server',
    misuse({
      'worker token': worker.token,
      'agent token': agentToken,
      'admin token': TEST_ADMIN_TOKEN,
      'egress-audience forward token': egressAudience,
      'egress forward token': egressToken,
    }),
    (token) => sendArtifact(forUpstream, token),
    { status: 401, invalid: 'forward_token_invalid' },
  );

  // Admin routes take the admin token only; the bundle reader's token is known but not enough.
  const adminMisuse = misuse({ 'worker token': worker.token, 'agent token': agentToken, 'forward token': egressToken });
  await refuseAll(t, 'GET /v1/status', adminMisuse, (token) => send(control('/v1/status'), { token }), {
    status: 401,
    invalid: 'unauthorized',
  });
  await refuseAll(
    t,
    'GET /v1/status',
    misuse({ 'bundle reader token': BUNDLE_READER_TOKEN }),
    (token) => send(control('/v1/status'), { token }),
    { status: 403, invalid: 'forbidden' },
  );
});

test.serial('API Egress refuses every forged or tampered forward token', async (t) => {
  const body = egressBody();
  const genuine = await signForwardToken(gw.gateway.keys.current(), egressClaims(), body, 30_000);
  craftedTokens.add(genuine);
  const attacks = await jwtAttacks(base(genuine));
  attacks.push({
    name: 'lifetime longer than forward tokens live',
    token: await signForwardToken(gw.gateway.keys.current(), egressClaims(), body, 3_600_000),
  });
  await refuseAll(t, 'egress', attacks, (token) => sendEgress(body, token), { status: 401, invalid: 'forward_token_invalid' });
  t.is(fake.received.filter((r) => JSON.stringify(r.body).includes('task-fwd')).length, 0, 'no forged call reached the provider');
});

test.serial('the upstream final gate refuses every forged or tampered forward token', async (t) => {
  const body = artifactBody();
  const genuine = await signForwardToken(gw.gateway.keys.current(), artifactClaims(), body, 30_000);
  craftedTokens.add(genuine);
  const attacks = await jwtAttacks(base(genuine));
  attacks.push({
    name: 'lifetime longer than forward tokens live',
    token: await signForwardToken(gw.gateway.keys.current(), artifactClaims(), body, 3_600_000),
  });
  await refuseAll(t, 'artifact server', attacks, (token) => sendArtifact(body, token), { status: 401, invalid: 'forward_token_invalid' });
});

test.serial('admin routes refuse JWTs and near-miss admin tokens', async (t) => {
  const attacks = [
    ...(await jwtAttacks(base(worker.token))),
    ...[
      ['admin token plus a character', `${TEST_ADMIN_TOKEN}x`],
      ['admin token minus a character', TEST_ADMIN_TOKEN.slice(0, -1)],
      ['admin token upper-cased', TEST_ADMIN_TOKEN.toUpperCase()],
      ['admin token base64', Buffer.from(TEST_ADMIN_TOKEN).toString('base64')],
      [
        'admin token as a JWT subject',
        `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'admin', token: TEST_ADMIN_TOKEN.slice(0, 8) })).toString('base64url')}.`,
      ],
    ].map(([name, token]) => ({ name: name!, token: token! })),
  ];
  const routes: [string, (token: string) => Promise<Sent>][] = [
    ['GET /v1/status', (token) => send(control('/v1/status'), { token })],
    ['GET /v1/credentials', (token) => send(control('/v1/credentials'), { token })],
    ['POST /v1/psks', (token) => send(control('/v1/psks'), { token, json: { name: 'stolen' } })],
    ['POST /v1/keys/rotate', (token) => send(control('/v1/keys/rotate'), { method: 'POST', token })],
    [
      'PUT /v1/settings/cloud_routing.enabled',
      (token) => send(control('/v1/settings/cloud_routing.enabled'), { method: 'PUT', token, json: { value: false } }),
    ],
    ['GET /v1/audit', (token) => send(control('/v1/audit'), { token })],
    [
      'POST /v1/data/cynode/register/decision',
      (token) => send(control('/v1/data/cynode/register/decision'), { token, json: { input: {} } }),
    ],
    ['GET /v1/bundles/cynode', (token) => send(control('/v1/bundles/cynode'), { token })],
    ['GET /v1/workers', (token) => send(control('/v1/workers'), { token })],
    [
      'POST /v1/jobs',
      (token) =>
        send(control('/v1/jobs'), {
          token,
          headers: { 'idempotency-key': randomUUID() },
          json: { task_id: 'task-x', payload: { kind: 'echo' } },
        }),
    ],
    ['GET /v1/decisions/{id}', (token) => send(control(`/v1/decisions/${randomUUID()}`), { token })],
    [
      'PUT /v1/preferences/system/default/cloud_allowed',
      (token) => send(control('/v1/preferences/system/default/cloud_allowed'), { method: 'PUT', token, json: { value: false } }),
    ],
    [
      'PUT /v1/budgets/task/task-s',
      (token) => send(control('/v1/budgets/task/task-s'), { method: 'PUT', token, json: { limit_usd: 1_000_000 } }),
    ],
    [
      'POST /v1/credentials',
      (token) =>
        send(control('/v1/credentials'), { token, json: { provider: 'openai', name: 'planted', secret: 'sk-planted-by-an-attacker' } }),
    ],
    ['DELETE /v1/psks/{id}', (token) => send(control(`/v1/psks/${pskId(psk)}`), { method: 'DELETE', token })],
  ];
  let sent = 0;
  for (const [name, attempt] of routes) sent += await refuseAll(t, name, attacks, attempt, { status: 401, invalid: 'unauthorized' });
  t.log(`${sent} admin-route attacks refused`);
  // Other ways of presenting the token are not accepted either.
  for (const headers of <Record<string, string>[]>[
    { authorization: `Basic ${Buffer.from(`admin:${TEST_ADMIN_TOKEN}`).toString('base64')}` },
    { authorization: `Bearer ${TEST_ADMIN_TOKEN} ${TEST_ADMIN_TOKEN}` },
    { 'x-api-key': TEST_ADMIN_TOKEN },
  ]) {
    const res = await send(control('/v1/status'), { headers });
    t.is(res.status, 401, JSON.stringify(headers).slice(0, 40));
    t.is(codeOf(res.body), 'unauthorized');
  }
  t.is((await send(control('/v1/status'), { token: TEST_ADMIN_TOKEN })).status, 200);
  const credentials = (await send(control('/v1/credentials'), { token: TEST_ADMIN_TOKEN })).body as { credentials: { name: string }[] };
  t.deepEqual(
    credentials.credentials.map((c) => c.name),
    ['main'],
    'nothing was planted',
  );
});

test.serial('admin routes cannot be reached around the token by spelling the path differently', async (t) => {
  const tricks = [
    '/V1/STATUS',
    '/v1/Status',
    '/v1/status/',
    '//v1/status',
    '/v1//status',
    '/v1/./status',
    '/./v1/status',
    '/v1/jobs/../status',
    '/%2e/v1/status',
    '/v1/%73tatus',
    '/v1/status;x',
    '/v1/status%2f',
    '/v1/status%00',
    '/V1/PSKS',
    '/v1/psks//',
    '/v1/credentials/',
    '/v1/workers?admin=true',
    '/v1/audit#',
  ];
  for (const path of tricks) {
    for (const token of [null, worker.token]) {
      const res = await send(`${gw.url('control')}${path}`, { method: 'GET', token });
      t.true([401, 404, 405].includes(res.status), `${path}: ${res.status}`);
      t.true(
        ['unauthorized', 'not_found', 'method_not_allowed', 'token_invalid'].includes(String(codeOf(res.body))),
        `${path}: ${JSON.stringify(res.body)}`,
      );
    }
  }
});

test.serial('the stdio upstream refuses every forged or tampered forward token in _meta', async (t) => {
  const input = new PassThrough();
  const output = new PassThrough();
  const stdio = await startArtifactServer({
    knex: gw.gateway.db.knex,
    gate,
    logger: logs.logger,
    host: '127.0.0.1',
    port: 0,
    maxBodyBytes: 1_048_576,
    transport: 'stdio',
    stdio: { input, output },
  });
  t.teardown(() => stdio.close());
  const pending = new Map<string, (message: any) => void>();
  let buffered = '';
  output.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const message = JSON.parse(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
      pending.get(String(message.id))?.(message);
    }
  });
  const params = { name: 'artifact_list', arguments: { task_id: 'task-s' } };
  const request = (token: string) => {
    const id = randomUUID();
    const answer = new Promise<any>((resolve) => pending.set(id, resolve));
    input.write(
      `${JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { ...params, _meta: { [STDIO_TOKEN_META]: token } } })}\n`,
    );
    return answer;
  };
  const bound = stdioBoundBody('tools/call', params);
  const genuine = await signForwardToken(gw.gateway.keys.current(), artifactClaims(), bound, 30_000);
  craftedTokens.add(genuine);
  const ok = await request(genuine);
  t.truthy(ok.result, JSON.stringify(ok));
  const attacks = [
    ...(await jwtAttacks(base(await signForwardToken(gw.gateway.keys.current(), artifactClaims(), bound, 30_000)))),
    { name: 'replayed', token: genuine },
    { name: 'worker token', token: worker.token },
    {
      name: 'bound to another call',
      token: await signForwardToken(
        gw.gateway.keys.current(),
        artifactClaims(),
        stdioBoundBody('tools/call', { ...params, arguments: { task_id: 'task-other' } }),
        30_000,
      ),
    },
  ];
  for (const attack of attacks) {
    craftedTokens.add(attack.token);
    const answer = await request(attack.token);
    t.is(answer.error?.code, -32001, `stdio: ${attack.name}`);
    const expected =
      attack.name === 'replayed'
        ? 'forward_token_replayed'
        : attack.name === 'bound to another call'
          ? 'forward_body_mismatch'
          : 'forward_token_invalid';
    t.is(answer.error?.data?.code, expected, `stdio: ${attack.name}`);
  }
});

test.serial('a token of a replaced session is refused everywhere, and its agent tokens with it', async (t) => {
  const node = 'cloud-us-east-1-02';
  const first = await send(control('/register'), {
    headers: { 'x-cynode-psk': psk },
    json: { ...SEED_WORKER, node_id: node, max_concurrency: 4 },
  });
  const old = handedOut(String(first.body.token));
  issuedTokens.add(old);
  const job = await send(control('/v1/jobs'), {
    token: TEST_ADMIN_TOKEN,
    headers: { 'idempotency-key': randomUUID() },
    json: { task_id: 'task-r', user_id: 'user-r', requirements: { labels: ['cloud'] }, payload: { kind: 'api.call' } },
  });
  const id = String(job.body.id);
  await eventually(
    async () =>
      ((await send(control('/jobs/poll'), { token: old, json: {} })).body.jobs as { job_id: string }[]).some((j) => j.job_id === id),
    10_000,
  );
  const agent = await send(control('/v1/agent-tokens'), { token: old, json: { agent_type: 'sandbox', job_id: id } });
  t.is(agent.status, 201);
  const oldAgent = handedOut(String(agent.body.token));
  issuedTokens.add(oldAgent);

  // Someone else with the PSK cannot take the node id while it is held, whatever proof they bring.
  const takeover = await send(control('/register'), {
    headers: { 'x-cynode-psk': psk },
    json: { ...SEED_WORKER, node_id: node, max_concurrency: 4 },
  });
  t.is(takeover.status, 409);
  t.is(codeOf(takeover.body), 'node_id_taken');
  const proofs = (await jwtAttacks(base(old))).filter((a) => !a.expired); // an expired token of the session is a legitimate renewal proof
  for (const proof of proofs) {
    craftedTokens.add(proof.token);
    const res = await send(control('/register'), {
      token: proof.token,
      headers: { 'x-cynode-psk': psk },
      json: { ...SEED_WORKER, node_id: node, max_concurrency: 4 },
    });
    t.is(res.status, 409, `forged renewal proof: ${proof.name}`);
    t.is(codeOf(res.body), 'node_id_taken', `forged renewal proof: ${proof.name}`);
  }

  // The session renews with its own token; from then on the old token and its agents are refused.
  const renewed = await send(control('/register'), {
    token: old,
    headers: { 'x-cynode-psk': psk },
    json: { ...SEED_WORKER, node_id: node, max_concurrency: 4 },
  });
  t.is(renewed.status, 200, JSON.stringify(renewed.body));
  const current = handedOut(String(renewed.body.token));
  issuedTokens.add(current);
  for (const [name, attempt] of workerSurfaces()) {
    const res = await attempt(old);
    t.is(res.status, 401, name);
    t.is(codeOf(res.body), 'session_replaced', name);
  }
  const agentRes = await send(mcpUrl(), { token: oldAgent, headers: { accept: MCP_ACCEPT }, json: rpc('tools/list') });
  t.is(agentRes.status, 401);
  t.is(codeOf(agentRes.body), 'session_replaced');
  t.is((await send(control('/jobs/poll'), { token: current, json: {} })).status, 200, 'the new session works');
});

test.serial('a token past the HTTP header limit is cut off by the parser (431) on every port, and every port still serves', async (t) => {
  const huge = `eyJ${'A'.repeat(64 * 1024)}`;
  const ports = [control('/jobs/poll'), mcpUrl(), egressUrl(), artifacts.url];
  for (const url of ports) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${huge}`, [FORWARD_TOKEN_HEADER]: huge, 'content-type': 'application/json' },
      body: '{}',
    });
    t.is(res.status, 431, url);
    await res.arrayBuffer();
  }
  t.is((await send(control('/jobs/poll'), { token: worker.token, json: {} })).status, 200);
  t.is((await fetch(`${gw.url('mcp')}/healthz`)).status, 200);
  t.is((await fetch(`${gw.url('egress')}/healthz`)).status, 200);
});

test.serial(
  'a full scenario (registration, jobs, api.call, MCP tools, the attacks above) leaks no secret into answers, logs or any table',
  async (t) => {
    // The rest of the scenario: api.call over REST (worker and orchestrator) and over MCP, an
    // upstream tool call, a provider that quotes the key back, and a result.
    const viaRest = await send(control('/v1/api/call'), { token: worker.token, json: apiCallBody('task-s', jobId) });
    t.is(viaRest.status, 200, JSON.stringify(viaRest.body));
    fake.next('echo-key');
    const echoed = await send(control('/v1/api/call'), { token: TEST_ADMIN_TOKEN, json: apiCallBody('task-s', undefined) });
    t.true(echoed.status >= 400 && echoed.status < 500, JSON.stringify(echoed.body));
    t.true(
      fake.received.some((r) => r.headers.authorization === `Bearer ${PROVIDER_KEY}`),
      'the provider did get the key',
    );
    const mcp = (method: string, params: Record<string, unknown>, token = worker.token) =>
      send(mcpUrl(), { token, headers: { accept: MCP_ACCEPT }, json: rpc(method, params) });
    t.is(
      (await mcp('tools/call', { name: 'artifacts.artifact_put', arguments: { task_id: 'task-s', name: 'notes.md', content: 'hello' } }))
        .status,
      200,
    );
    const viaMcp = await mcp('tools/call', { name: 'api.call', arguments: apiCallBody('task-s', jobId) }, agentToken);
    t.is(viaMcp.status, 200);
    t.falsy(viaMcp.body.result?.isError, JSON.stringify(viaMcp.body).slice(0, 300));
    const done = await send(control('/result'), {
      token: worker.token,
      json: { job_id: jobId, lease_id: leaseId, status: 'succeeded', result: { ok: true } },
    });
    t.is(done.status, 200, JSON.stringify(done.body));

    await Promise.all([gw.gateway.decisionLog.flush(), gw.gateway.audit.flush(), gw.gateway.toolAudit.flush()]);
    await gw.gateway.egress.settled();

    // What must never appear, in the forms it could take.
    const secrets = new Map<string, string>();
    const add = (name: string, value: string) => {
      secrets.set(value, name);
      secrets.set(Buffer.from(value).toString('base64'), `${name} (base64)`);
      secrets.set(Buffer.from(value).toString('base64url'), `${name} (base64url)`);
    };
    add('PSK', psk);
    add('PSK secret part', pskSecretPart(psk));
    add('provider key', PROVIDER_KEY);
    add('admin token', TEST_ADMIN_TOKEN);
    add('bundle reader token', BUNDLE_READER_TOKEN);
    secrets.set(MASTER_KEY.toString('base64'), 'master key (base64)');
    secrets.set(MASTER_KEY.toString('base64url'), 'master key (base64url)');
    secrets.set(MASTER_KEY.toString('hex'), 'master key (hex)');
    for (const token of issuedTokens) {
      add(`issued JWT of ${String(decodeJwt(token).sub)}`, token);
      secrets.set(token.split('.')[2]!, `signature of an issued JWT (${String(decodeProtectedHeader(token).typ)})`);
    }
    t.true(issuedTokens.size >= 5);

    const hits: string[] = [];
    const scan = (where: string, text: string, allowed: string[] = []) => {
      for (const [secret, name] of secrets) {
        if (allowed.some((a) => a === secret || a.includes(secret))) continue;
        if (text.includes(secret)) hits.push(`${name} in ${where}`);
      }
    };
    // The answers, headers included; the few that exist to hand out a secret may hold that one only.
    for (const x of exchanges) scan(`answer to ${x.what} (${x.status})`, `${x.headers}\n${x.body}`, x.issued);
    // No crafted token is ever echoed back or logged either (the real ones used out of place are secrets, scanned above).
    const crafted = [...craftedTokens].filter(
      (token) => !issuedTokens.has(token) && token !== TEST_ADMIN_TOKEN && token !== BUNDLE_READER_TOKEN,
    );
    for (const x of exchanges) {
      // A stripped signature leaves a prefix of the genuine token, which its issuing answer holds.
      for (const token of crafted)
        if (!x.issued.some((a) => a.includes(token)) && `${x.headers}\n${x.body}`.includes(token))
          hits.push(`a crafted token echoed by ${x.what}`);
    }
    for (const line of logs.lines) scan('the log', line);
    for (const line of logs.lines) for (const token of crafted) if (line.includes(token)) hits.push('a crafted token in the log');

    // Every row of every table: audit chains, decision log, and everything else the gateway stores.
    const tables = (
      (await gw.gateway.db.knex.raw("select tablename from pg_tables where schemaname = 'public'")) as { rows: { tablename: string }[] }
    ).rows.map((r) => r.tablename);
    let rows = 0;
    for (const table of tables) {
      const result = (await gw.gateway.db.knex.raw(`select t::text as row from ${table} t`)) as { rows: { row: string }[] };
      rows += result.rows.length;
      for (const r of result.rows) scan(`table ${table}`, r.row);
    }
    const chains: Record<string, number> = {};
    for (const chained of ['decision_log', 'api_audit', 'tool_audit']) {
      chains[chained] = Number(((await gw.gateway.db.knex(chained).count({ n: '*' })) as { n: string }[])[0]!.n);
      t.true(chains[chained]! > 0, `${chained} has rows to scan`);
    }
    t.log(`chained rows: ${JSON.stringify(chains)}`);
    // The scanner itself finds a planted secret in any of its forms.
    const before = hits.length;
    scan(
      'a canary',
      `x${Buffer.from(PROVIDER_KEY).toString('base64')}x ${MASTER_KEY.toString('hex')} ${[...issuedTokens][0]!.split('.')[2]}`,
    );
    const found = hits.slice(before).join('\n');
    for (const name of ['provider key (base64', 'master key (hex)', 'signature of an issued JWT'])
      t.true(found.includes(name), `the scan detects a planted ${name}`);
    hits.splice(before);
    t.log(
      `scanned ${exchanges.length} answers, ${logs.lines.length} log lines, ${rows} rows in ${tables.length} tables for ${secrets.size} secret forms and ${crafted.length} crafted tokens`,
    );
    t.true(exchanges.length > 900 && logs.lines.length > 100);
    t.deepEqual([...new Set(hits)], []);
  },
);
