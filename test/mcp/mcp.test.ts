import { randomBytes, randomUUID } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import test from 'ava';
import { generateKeyPair } from 'jose';
import pino from 'pino';
import { type ArtifactServer, startArtifactServer } from '../../src/artifacts/server.js';
import { createFinalGate, FORWARD_TOKEN_HEADER, type FinalGate, signForwardToken } from '../../src/final-gate/index.js';
import { ENTRYPOINTS } from '../../src/policy/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { buildCustomBundle } from '../helpers/bundle.js';
import { TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { type FakeProvider, startFakeProvider } from '../helpers/fake-providers.js';
import { call, eventually, freePort } from '../helpers/http.js';
import { captureLogger } from '../helpers/start.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

const KEY = `sk-mcp-${randomBytes(16).toString('hex')}`;
let gw: BootedGateway;
let fake: FakeProvider;
let gate: FinalGate;
let artifacts: ArtifactServer;
let worker: TestWorker;
let jobId: string;
const logs = captureLogger();

/** The SDK's own client, authenticated as a worker. */
async function connect(token: string): Promise<Client> {
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${gw.url('mcp')}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
  );
  return client;
}
const mcpError = async (p: Promise<unknown>) =>
  (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as McpError & { data?: { code?: string; reasons?: string[] } };

test.before(async () => {
  fake = await startFakeProvider();
  const port = await freePort();
  gw = await bootGateway({
    env: {
      CYNODE_OPENAI_BASE_URL: fake.url,
      CYNODE_MCP_UPSTREAMS: `artifacts=http://127.0.0.1:${port}/mcp`,
      CYNODE_MCP_MAX_ARGUMENT_BYTES: '4096',
      CYNODE_MCP_MAX_RESPONSE_BYTES: '16384',
    },
    roles: ['control', 'mcp', 'egress'],
    logger: logs.logger,
  });
  gate = createFinalGate({
    gatewayUrl: gw.url('control'),
    audience: 'mcp-upstream:artifacts',
    bundleToken: TEST_ADMIN_TOKEN,
    logger: pino({ level: 'silent' }),
  });
  await gate.ready;
  artifacts = await startArtifactServer({
    knex: gw.gateway.db.knex,
    gate,
    logger: logs.logger,
    host: '127.0.0.1',
    port,
    maxBodyBytes: 1_048_576,
  });
  const base = gw.url('control');
  await call(base, '/v1/credentials', { json: { provider: 'openai', name: 'main', secret: KEY } });
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  await call(base, '/v1/budgets/task/task-m', { method: 'PUT', json: { limit_usd: 1 } });
  worker = await registerWorker(base, (await createPsk(base)).secret, { node_id: 'cloud-us-east-1-01' });
  jobId = String(
    (await submitJob(base, { task_id: 'task-m', user_id: 'user-m', requirements: { labels: ['cloud'] }, payload: { kind: 'api.call' } }))
      .body.id,
  );
  await eventually(async () => (await poll(base, worker)).body.jobs.some((j) => j.job_id === jobId), 10_000);
});
test.after.always(async () => {
  await artifacts?.close();
  gate?.close();
  await gw?.stop();
  await fake?.close();
});

test.serial('a worker lists its tools and calls an upstream tool through the gateway, for the task it leases', async (t) => {
  const client = await connect(worker.token);
  const { tools } = await client.listTools();
  t.deepEqual(tools.map((x) => x.name).sort(), ['api.call', 'artifacts.artifact_get', 'artifacts.artifact_list', 'artifacts.artifact_put']);
  const put = await client.callTool({
    name: 'artifacts.artifact_put',
    arguments: { task_id: 'task-m', name: 'notes.md', content: 'hello from the sandbox' },
  });
  t.falsy(put.isError);
  t.like(put.structuredContent, { task_id: 'task-m', name: 'notes.md', size: 22 });
  const got = await client.callTool({ name: 'artifacts.artifact_get', arguments: { task_id: 'task-m', name: 'notes.md' } });
  t.is((got.structuredContent as { content: string }).content, 'hello from the sandbox');
  const row = (await gw.gateway.db.knex('artifacts').where({ task_id: 'task-m', name: 'notes.md' }).first()) as { written_by: string };
  t.is(row.written_by, 'cloud-us-east-1-01', 'the upstream knows who called, from the forward token');
  await client.close();
});

test.serial('denied tools are absent from the list and refused on call, with reasons', async (t) => {
  const client = await connect(worker.token);
  t.is(
    (
      await call(gw.url('control'), '/v1/settings/mcp.disabled_tools', {
        method: 'PUT',
        json: { value: { 'artifacts.artifact_put': true } },
      })
    ).status,
    200,
  );
  await eventually(async () => !(await client.listTools()).tools.some((x) => x.name === 'artifacts.artifact_put'));
  const disabled = await mcpError(
    client.callTool({ name: 'artifacts.artifact_put', arguments: { task_id: 'task-m', name: 'x', content: 'y' } }),
  );
  t.true(disabled instanceof McpError);
  t.is(disabled.code, -32001);
  t.deepEqual(disabled.data?.reasons, ['tool_disabled']);
  await call(gw.url('control'), '/v1/settings/mcp.disabled_tools', { method: 'PUT', json: { value: {} } });

  const noLease = await mcpError(client.callTool({ name: 'artifacts.artifact_list', arguments: { task_id: 'task-not-mine' } }));
  t.is(noLease.code, -32001);
  t.deepEqual(noLease.data?.reasons, ['lease_required']);
  const audit = (await gw.gateway.toolAudit.flush(),
  await gw.gateway.db.knex('tool_audit').where({ task_id: 'task-not-mine' }).select()) as Record<string, unknown>[];
  t.like(audit[0], { subject_id: 'cloud-us-east-1-01', agent_type: 'worker', tool: 'artifacts.artifact_list', outcome: 'denied' });
  t.deepEqual(audit[0]!.reasons, ['lease_required']);
  await client.close();
});

test.serial('malformed JSON-RPC, unknown tools, bad and oversized arguments get MCP errors, and the gateway stays up', async (t) => {
  const url = `${gw.url('mcp')}/mcp`;
  const headers = {
    authorization: `Bearer ${worker.token}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
  };
  const garbage = await fetch(url, { method: 'POST', headers, body: '{"jsonrpc": "2.0", "method": ' });
  t.is(garbage.status, 400);
  t.is(((await garbage.json()) as { error: { code: number } }).error.code, -32700);
  const notRpc = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ hello: 'world' }) });
  t.is(notRpc.status, 400);
  t.truthy(((await notRpc.json()) as { error?: unknown }).error);
  const anonymous = await fetch(url, { method: 'POST', headers: { ...headers, authorization: '' }, body: '{}' });
  t.is(anonymous.status, 401);

  const client = await connect(worker.token);
  const unknown = await mcpError(client.callTool({ name: 'shell.exec', arguments: { cmd: 'id' } }));
  t.is(unknown.code, -32602);
  t.is(unknown.data?.code, 'tool_unknown');
  const invalid = await mcpError(
    client.callTool({ name: 'artifacts.artifact_put', arguments: { task_id: 'task-m', name: '../etc/passwd', content: 'x' } }),
  );
  t.is(invalid.code, -32602);
  t.is(invalid.data?.code, 'invalid_arguments');
  const huge = await mcpError(
    client.callTool({ name: 'artifacts.artifact_put', arguments: { task_id: 'task-m', name: 'big', content: 'x'.repeat(5000) } }),
  );
  t.is(huge.code, -32602);
  t.is(huge.data?.code, 'arguments_too_large');
  const ok = await client.callTool({ name: 'artifacts.artifact_list', arguments: { task_id: 'task-m' } });
  t.falsy(ok.isError, 'still serving');
  await client.close();
});

test.serial('an upstream answer larger than mcp.maxResponseBytes is refused, not passed on', async (t) => {
  const content = 'x'.repeat(20_000);
  await gw.gateway.db.knex('artifacts').insert({
    task_id: 'task-m',
    name: 'huge.txt',
    content,
    sha256: 'f'.repeat(64),
    size: content.length,
    written_by: 'test',
    updated_at: new Date(),
  });
  const client = await connect(worker.token);
  const tooBig = await mcpError(client.callTool({ name: 'artifacts.artifact_get', arguments: { task_id: 'task-m', name: 'huge.txt' } }));
  t.is(tooBig.code, -32002);
  t.is(tooBig.data?.code, 'payload_too_large');
  const small = await client.callTool({ name: 'artifacts.artifact_list', arguments: { task_id: 'task-m' } });
  t.falsy(small.isError, 'smaller answers still pass');
  await client.close();
});

test.serial('api.call through MCP reproduces Example 1: the provider sees the injected key, the worker never does', async (t) => {
  const client = await connect(worker.token);
  const res = await client.callTool({
    name: 'api.call',
    arguments: {
      provider: 'openai',
      operation: 'chat.completions',
      task_id: 'task-m',
      job_id: jobId,
      params: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 },
    },
  });
  t.falsy(res.isError, JSON.stringify(res.structuredContent));
  const envelope = res.structuredContent as { status: string; cost_usd: number; result: { choices: { message: { content: string } }[] } };
  t.is(envelope.status, 'ok');
  t.is(envelope.result.choices[0]!.message.content, 'Hello from the fake provider');
  t.is(fake.received.at(-1)!.headers.authorization, `Bearer ${KEY}`);
  t.false(JSON.stringify(res).includes(KEY));
  const denied = await client.callTool({
    name: 'api.call',
    arguments: {
      provider: 'anthropic',
      operation: 'messages',
      task_id: 'task-m',
      job_id: jobId,
      params: { model: 'claude-3-5-haiku-latest', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] },
    },
  });
  t.true(denied.isError);
  t.true((denied.structuredContent as { error: { reasons: string[] } }).error.reasons.includes('provider_not_allowed'));
  await client.close();
});

test.serial(
  'the upstream runs the final gate: it re-decides on its own bundle and refuses forged, expired and replayed tokens',
  async (t) => {
    const body = (args: Record<string, unknown>) =>
      JSON.stringify({ jsonrpc: '2.0', id: randomUUID(), method: 'tools/call', params: { name: 'artifact_list', arguments: args } });
    const input = (leaseActive: boolean) => ({
      action: 'mcp.tool.invoke',
      subject: { kind: 'worker', node_id: 'cloud-us-east-1-01', labels: ['cloud'], agent_type: 'worker' },
      resource: { tool: 'artifacts.artifact_list', server: 'artifacts', name: 'artifact_list' },
      context: { task_id: 'task-m', job_id: jobId, lease_active: leaseActive, arguments: { task_id: 'task-m' } },
    });
    const claims = (i: unknown) => ({
      issuer: 'cynode-gateway',
      audience: 'mcp-upstream:artifacts',
      subject: 'mcp:test',
      entrypoint: ENTRYPOINTS.mcpToolInvoke,
      input: i,
      revision: 'r',
    });
    const send = async (b: string, token: string) => {
      const res = await fetch(artifacts.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', [FORWARD_TOKEN_HEADER]: token },
        body: b,
      });
      return {
        status: res.status,
        body: (await res.json()) as { result?: unknown; error?: { code: number; data?: { code?: string; reasons?: string[] } } },
      };
    };
    const allowed = body({ task_id: 'task-m' });
    const token = await signForwardToken(gw.gateway.keys.current(), claims(input(true)), allowed, 10_000);
    const first = await send(allowed, token);
    t.is(first.status, 200, JSON.stringify(first.body));
    t.truthy(first.body.result);
    const replay = await send(allowed, token);
    t.is(replay.status, 401);
    t.is(replay.body.error?.data?.code, 'forward_token_replayed');

    // Signed by the gateway, but the upstream's own bundle says no (no live lease).
    const denied = body({ task_id: 'task-m' });
    const deniedRes = await send(denied, await signForwardToken(gw.gateway.keys.current(), claims(input(false)), denied, 10_000));
    t.is(deniedRes.status, 403);
    t.deepEqual(deniedRes.body.error?.data?.reasons, ['lease_required']);

    const forgedKey = (await generateKeyPair('ES256')).privateKey;
    const forged = body({ task_id: 'task-m' });
    const forgedRes = await send(
      forged,
      await signForwardToken({ kid: gw.gateway.keys.current().kid, privateKey: forgedKey }, claims(input(true)), forged, 10_000),
    );
    t.is(forgedRes.status, 401);
    t.is(forgedRes.body.error?.data?.code, 'forward_token_invalid');

    const expired = body({ task_id: 'task-m' });
    const expiredRes = await send(expired, await signForwardToken(gw.gateway.keys.current(), claims(input(true)), expired, -1000));
    t.is(expiredRes.body.error?.data?.code, 'forward_token_invalid');

    // A token for one task's call cannot carry another task's arguments.
    const other = body({ task_id: 'task-other' });
    const otherRes = await send(other, await signForwardToken(gw.gateway.keys.current(), claims(input(true)), other, 10_000));
    t.is(otherRes.body.error?.data?.code, 'forward_body_mismatch');
  },
);

test.serial('agent tokens: bound to agent type, task and job; each agent type sees and calls only its tools', async (t) => {
  const base = gw.url('control');
  const issue = (body: unknown, token = worker.token) => call<Record<string, string>>(base, '/v1/agent-tokens', { token, json: body });
  const sandbox = await issue({ agent_type: 'sandbox', job_id: jobId });
  t.is(sandbox.status, 201, JSON.stringify(sandbox.body));
  t.like(sandbox.body, { agent_type: 'sandbox', task_id: 'task-m', job_id: jobId });
  const pm = (await issue({ agent_type: 'pm', job_id: jobId })).body.token!;
  t.is((await issue({ agent_type: 'root', job_id: jobId })).status, 400);
  t.is((await issue({ agent_type: 'pm', job_id: randomUUID() })).status, 403, 'only for a job the worker leases');
  t.is((await issue({ agent_type: 'pm', job_id: jobId }, 'not-a-token')).status, 401);

  const asSandbox = await connect(sandbox.body.token!);
  t.deepEqual((await asSandbox.listTools()).tools.map((x) => x.name).sort(), [
    'artifacts.artifact_get',
    'artifacts.artifact_list',
    'artifacts.artifact_put',
  ]);
  const put = await asSandbox.callTool({
    name: 'artifacts.artifact_put',
    arguments: { task_id: 'task-m', name: 'sandbox.log', content: 'ran' },
  });
  t.falsy(put.isError);
  const otherTask = await mcpError(asSandbox.callTool({ name: 'artifacts.artifact_list', arguments: { task_id: 'task-other' } }));
  t.deepEqual(otherTask.data?.reasons, ['task_mismatch'], 'an agent acts only for the task its token names');
  const noProviders = await mcpError(
    asSandbox.callTool({
      name: 'api.call',
      arguments: { provider: 'openai', operation: 'chat.completions', task_id: 'task-m', job_id: jobId, params: {} },
    }),
  );
  t.deepEqual(noProviders.data?.reasons, ['tool_not_allowed']);
  await asSandbox.close();

  const asPm = await connect(pm);
  t.deepEqual((await asPm.listTools()).tools.map((x) => x.name).sort(), ['api.call', 'artifacts.artifact_get', 'artifacts.artifact_list']);
  const write = await mcpError(
    asPm.callTool({ name: 'artifacts.artifact_put', arguments: { task_id: 'task-m', name: 'x', content: 'y' } }),
  );
  t.deepEqual(write.data?.reasons, ['tool_not_allowed', 'tool_out_of_scope']);
  const otherJob = await mcpError(
    asPm.callTool({
      name: 'api.call',
      arguments: { provider: 'openai', operation: 'chat.completions', task_id: 'task-m', job_id: randomUUID(), params: {} },
    }),
  );
  t.deepEqual(otherJob.data?.reasons, ['job_mismatch']);
  await asPm.close();

  await gw.gateway.toolAudit.flush();
  const rows = (await gw.gateway.db.knex('tool_audit').where({ agent_type: 'pm' }).select('tool', 'outcome', 'reasons')) as {
    tool: string;
    outcome: string;
  }[];
  t.true(
    rows.some((r) => r.tool === 'artifacts.artifact_put' && r.outcome === 'denied'),
    'the agent type is audited',
  );
  // An agent token is not a worker token: the Worker API refuses it.
  t.is((await call(base, '/jobs/poll', { token: pm, json: {} })).status, 401);
});

test.serial('a target service denies what the gateway allowed when its own bundle says so', async (t) => {
  // The upstream restarts on the same address with a bundle that forbids reading artifacts.
  const strictBundle = await buildCustomBundle({
    'cynode/mcp_tool_invoke/strict.rego': [
      'package cynode.mcp_tool_invoke',
      '',
      'default allow := false',
      '',
      'allow if {',
      '\tis_string(input.resource.name)',
      '\tinput.resource.name != "artifact_get"',
      '}',
      '',
      'decision := {"allow": allow, "reasons": reasons}',
      '',
      'reasons := [] if allow',
      '',
      'reasons := ["target_forbids_reads"] if not allow',
      '',
    ].join('\n'),
  });
  const port = Number(new URL(artifacts.url).port);
  await artifacts.close();
  const strictGate = createFinalGate({
    gatewayUrl: gw.url('control'),
    audience: 'mcp-upstream:artifacts',
    bundle: strictBundle,
    bundleToken: null,
    logger: pino({ level: 'silent' }),
  });
  await strictGate.ready;
  const strict = await startArtifactServer({
    knex: gw.gateway.db.knex,
    gate: strictGate,
    logger: logs.logger,
    host: '127.0.0.1',
    port,
    maxBodyBytes: 1_048_576,
  });
  try {
    const client = await connect(worker.token);
    t.falsy(
      (await client.callTool({ name: 'artifacts.artifact_list', arguments: { task_id: 'task-m' } })).isError,
      'what both bundles allow still works',
    );
    const denied = await mcpError(client.callTool({ name: 'artifacts.artifact_get', arguments: { task_id: 'task-m', name: 'notes.md' } }));
    t.is(denied.code, -32002, 'allowed by the gateway, refused upstream');
    t.is(denied.data?.code, 'policy_denied');
    t.deepEqual(denied.data?.reasons, ['target_forbids_reads']);
    await client.close();
  } finally {
    await strict.close();
    strictGate.close();
    artifacts = await startArtifactServer({
      knex: gw.gateway.db.knex,
      gate,
      logger: logs.logger,
      host: '127.0.0.1',
      port,
      maxBodyBytes: 1_048_576,
    });
  }
});

test.serial('tool calls are audited in a verifiable chain, without arguments or secrets', async (t) => {
  await gw.gateway.toolAudit.flush();
  const rows = (await gw.gateway.db.knex('tool_audit').select()) as Record<string, unknown>[];
  t.true(rows.some((r) => r.tool === 'artifacts.artifact_put' && r.outcome === 'ok'));
  t.true(rows.some((r) => r.tool === 'api.call' && r.outcome === 'ok'));
  t.true(rows.some((r) => r.outcome === 'error' && r.error_code === 'arguments_too_large'));
  const text = JSON.stringify(rows) + logs.lines.join('\n');
  t.false(text.includes(KEY));
  t.false(text.includes('hello from the sandbox'), 'artifact content is not audited');
  t.false(/eyJ[\w-]{10,}\.eyJ[\w-]{10,}\./.test(text), 'no JWT in audit or logs');
  const verified = await gw.gateway.toolAudit.verify();
  t.is(verified.break, undefined);
  t.true(verified.rows >= rows.length);
});
