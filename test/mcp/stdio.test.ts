import { execFileSync } from 'node:child_process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import test from 'ava';
import { generateKeyPair } from 'jose';
import { signForwardToken } from '../../src/final-gate/index.js';
import { STDIO_TOKEN_META, stdioBoundBody } from '../../src/mcp/index.js';
import { ENTRYPOINTS } from '../../src/policy/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { TEST_ADMIN_TOKEN } from '../helpers/config.js';
import { call, eventually, freePort } from '../helpers/http.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { captureLogger } from '../helpers/start.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

// The reference artifact server as a local stdio upstream: the gateway starts it itself.
const COMMAND = `stdio:${process.execPath} --import tsx src/cli/main.ts artifact-server --name artifacts --stdio`;

let db: TestDatabase;
let gw: BootedGateway;
let worker: TestWorker;
let jobId: string;
let childEnv: Record<string, string>;
const logs = captureLogger();

const mcpError = async (p: Promise<unknown>) =>
  (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as McpError & { data?: { code?: string; reasons?: string[] } };

test.before(async () => {
  db = await createTestDatabase(); // before the gateway: the stdio child's env names it
  const control = await freePort();
  childEnv = {
    DATABASE_URL: db.url,
    CYNODE_GATEWAY_URL: `http://127.0.0.1:${control}`,
    CYNODE_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    CYNODE_POLICY_ALLOW_UNSIGNED: 'true',
    CYNODE_LOG_LEVEL: 'warn',
  };
  gw = await bootGateway({
    env: {
      CYNODE_CONTROL_PORT: String(control),
      CYNODE_MCP_UPSTREAMS: `artifacts=${COMMAND}`,
      CYNODE_MCP_STDIO_ENV: Object.entries(childEnv)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
      CYNODE_MCP_TOOL_TIMEOUT_MS: '30000',
      CYNODE_MCP_MAX_RESPONSE_BYTES: '16384',
    },
    roles: ['control', 'mcp', 'egress'],
    logger: logs.logger,
    database: db,
  });
  const base = gw.url('control');
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  worker = await registerWorker(base, (await createPsk(base)).secret, { node_id: 'cloud-stdio-01' });
  jobId = String(
    (await submitJob(base, { task_id: 'task-s', user_id: 'user-s', requirements: { labels: ['cloud'] }, payload: { kind: 'echo' } })).body
      .id,
  );
  await eventually(async () => (await poll(base, worker)).body.jobs.some((j) => j.job_id === jobId), 10_000);
});
test.after.always(async () => {
  await gw?.stop();
  await db?.drop();
});

test.serial('a stdio upstream started by the gateway serves its tools through /mcp, each call carrying a forward token', async (t) => {
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${gw.url('mcp')}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${worker.token}` } },
    }),
  );
  const { tools } = await client.listTools();
  t.deepEqual(tools.map((x) => x.name).sort(), ['api.call', 'artifacts.artifact_get', 'artifacts.artifact_list', 'artifacts.artifact_put']);
  const put = await client.callTool({
    name: 'artifacts.artifact_put',
    arguments: { task_id: 'task-s', name: 'plan.md', content: 'over stdio' },
  });
  t.falsy(put.isError, JSON.stringify(put));
  const got = await client.callTool({ name: 'artifacts.artifact_get', arguments: { task_id: 'task-s', name: 'plan.md' } });
  t.is((got.structuredContent as { content: string }).content, 'over stdio');
  const row = (await gw.gateway.db.knex('artifacts').where({ task_id: 'task-s', name: 'plan.md' }).first()) as { written_by: string };
  t.is(row.written_by, 'cloud-stdio-01', 'the stdio upstream knows the caller from the forward token');

  // Decided at the gateway first: a task the worker does not lease never reaches the upstream.
  const denied = await mcpError(client.callTool({ name: 'artifacts.artifact_list', arguments: { task_id: 'task-other' } }));
  t.is(denied.code, -32001);
  t.deepEqual(denied.data?.reasons, ['lease_required']);
  await client.close();

  await gw.gateway.toolAudit.flush();
  const audit = (await gw.gateway.db.knex('tool_audit').where({ tool: 'artifacts.artifact_put' }).select()) as Record<string, unknown>[];
  t.like(audit[0], { subject_id: 'cloud-stdio-01', task_id: 'task-s', outcome: 'ok' });
  t.false(
    logs.lines.some((l) => l.includes(worker.token)),
    'no JWT in the gateway logs',
  );
});

test.serial('a stdio answer larger than mcp.maxResponseBytes is refused, not passed on', async (t) => {
  const content = 'x'.repeat(20_000);
  await gw.gateway.db.knex('artifacts').insert({
    task_id: 'task-s',
    name: 'huge.txt',
    content,
    sha256: 'f'.repeat(64),
    size: content.length,
    written_by: 'test',
    updated_at: new Date(),
  });
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${gw.url('mcp')}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${worker.token}` } },
    }),
  );
  t.teardown(() => client.close());
  const tooBig = await mcpError(client.callTool({ name: 'artifacts.artifact_get', arguments: { task_id: 'task-s', name: 'huge.txt' } }));
  t.is(tooBig.code, -32002);
  t.is(tooBig.data?.code, 'payload_too_large');
  const small = await client.callTool({ name: 'artifacts.artifact_get', arguments: { task_id: 'task-s', name: 'plan.md' } });
  t.falsy(small.isError, 'smaller answers still pass');
});

test.serial(
  'the stdio upstream runs the final gate on the token in _meta: missing, forged, mismatched and replayed tokens are refused',
  async (t) => {
    // The same server the gateway runs, started here so the test can speak to it directly.
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: ['--import', 'tsx', 'src/cli/main.ts', 'artifact-server', '--stdio'],
      env: { ...process.env, ...childEnv } as Record<string, string>,
      stderr: 'ignore',
    });
    const direct = new Client({ name: 'direct', version: '1.0.0' });
    await direct.connect(transport, { timeout: 30_000 });
    t.teardown(() => direct.close());

    const input = {
      action: 'mcp.tool.invoke',
      subject: { kind: 'worker', node_id: 'cloud-stdio-01', labels: ['cloud'], agent_type: 'worker' },
      resource: { tool: 'artifacts.artifact_list', server: 'artifacts', name: 'artifact_list' },
      context: { task_id: 'task-s', job_id: jobId, lease_active: true, arguments: { task_id: 'task-s' } },
    };
    const claims = {
      issuer: 'cynode-gateway',
      audience: 'mcp-upstream:artifacts',
      subject: 'mcp:test',
      entrypoint: ENTRYPOINTS.mcpToolInvoke,
      input,
      revision: 'r',
    };
    const params = { name: 'artifact_list', arguments: { task_id: 'task-s' } };
    const send = (p: Record<string, unknown>, token?: string) =>
      direct.request(
        { method: 'tools/call', params: { ...p, ...(token && { _meta: { [STDIO_TOKEN_META]: token } }) } },
        CallToolResultSchema,
        { timeout: 30_000 },
      );

    const missing = await mcpError(send(params));
    t.is(missing.code, -32001);
    t.is(missing.data?.code, 'forward_token_invalid');

    const forgedKey = (await generateKeyPair('ES256')).privateKey;
    const forged = await mcpError(
      send(
        params,
        await signForwardToken(
          { kid: gw.gateway.keys.current().kid, privateKey: forgedKey },
          claims,
          stdioBoundBody('tools/call', params),
          10_000,
        ),
      ),
    );
    t.is(forged.data?.code, 'forward_token_invalid');

    // A token bound to one task's call cannot carry another task's arguments.
    const other = { name: 'artifact_list', arguments: { task_id: 'task-other' } };
    const mismatched = await mcpError(
      send(other, await signForwardToken(gw.gateway.keys.current(), claims, stdioBoundBody('tools/call', params), 10_000)),
    );
    t.is(mismatched.data?.code, 'forward_body_mismatch');

    const token = await signForwardToken(gw.gateway.keys.current(), claims, stdioBoundBody('tools/call', params), 10_000);
    const ok = await send(params, token);
    t.like(ok.structuredContent, { task_id: 'task-s' });
    const replayed = await mcpError(send(params, token));
    t.is(replayed.data?.code, 'forward_token_replayed');

    // Its own decision on its own bundle: a lease the gateway vouches is inactive is refused.
    const lapsed = { ...claims, input: { ...input, context: { ...input.context, lease_active: false } } };
    const refused = await mcpError(
      send(params, await signForwardToken(gw.gateway.keys.current(), lapsed, stdioBoundBody('tools/call', params), 10_000)),
    );
    t.is(refused.data?.code, 'policy_denied');
    t.deepEqual(refused.data?.reasons, ['lease_required']);
  },
);

test.serial('a stdio upstream that dies is started again on the next call', async (t) => {
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${gw.url('mcp')}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${worker.token}` } },
    }),
  );
  t.teardown(() => client.close());
  const children = () =>
    execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('artifact-server --name artifacts --stdio'))
      .map((l) => Number(l.trim().split(/\s+/)[0]));
  const [first] = children();
  t.truthy(first, 'the gateway started the upstream as its child');
  process.kill(first!, 'SIGKILL');
  // Calls in the moment the gateway learns of the death fail closed; then a new server answers.
  const failures: (string | undefined)[] = [];
  let again: Awaited<ReturnType<typeof client.callTool>> | undefined;
  await eventually(async () => {
    try {
      again = await client.callTool({ name: 'artifacts.artifact_list', arguments: { task_id: 'task-s' } });
      return true;
    } catch (err) {
      failures.push((err as McpError & { data?: { code?: string } }).data?.code);
      return false;
    }
  }, 20_000);
  t.true(
    failures.every((c) => c === 'upstream_error' || c === 'upstream_unavailable'),
    JSON.stringify(failures),
  );
  t.falsy(again!.isError, JSON.stringify(again));
  t.like(again!.structuredContent, { task_id: 'task-s' });
  const [second] = children();
  t.truthy(second);
  t.not(second, first);
});
