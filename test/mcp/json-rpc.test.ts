import { createServer, type Server } from 'node:http';
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import test from 'ava';
import { FORWARD_TOKEN_HEADER } from '../../src/final-gate/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';
import { call, eventually, freePort } from '../helpers/http.js';
import { createPsk, poll, registerWorker, submitJob, type TestWorker } from '../helpers/workers.js';

// The MCP endpoint's JSON-RPC and transport rules, served without an SDK server per request,
// against a scripted upstream: what the SDK's stateless transport answered is still answered.

let gw: BootedGateway;
let upstream: Server;
let worker: TestWorker;
const seen: { method: string; token: string | undefined }[] = [];
let resetNextCall = false; // the scripted upstream drops the connection of the next tools/call unanswered

const schema = { type: 'object', properties: { task_id: { type: 'string' }, name: { type: 'string' } }, required: ['task_id'] };
// What the scripted upstream answers to tools/call, by tool.
const RESULTS: Record<string, unknown> = {
  artifact_list: { content: 'not a list' },
  artifact_get: { structuredContent: { found: true } },
  artifact_put: 'not an object',
};

/** A stateless MCP server over HTTP that lists three tools and answers each call from RESULTS. */
function startUpstream(port: number): Promise<Server> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      const msg = JSON.parse(body) as { id: string; method: string; params: { name?: string } };
      seen.push({ method: msg.method, token: req.headers[FORWARD_TOKEN_HEADER] as string | undefined });
      if (msg.method === 'tools/call' && resetNextCall) {
        resetNextCall = false;
        req.socket.destroy();
        return;
      }
      const result =
        msg.method === 'tools/list'
          ? { tools: Object.keys(RESULTS).map((name) => ({ name, inputSchema: schema })) }
          : RESULTS[msg.params.name ?? ''];
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }));
    });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

const MCP_HEADERS = { accept: 'application/json, text/event-stream' };
const post = (body: unknown, headers: Record<string, string> = {}) =>
  call<any>(gw.url('mcp'), '/mcp', { token: worker.token, json: body, headers: { ...MCP_HEADERS, ...headers } });
const rpc = (id: number, method: string, params?: Record<string, unknown>) => ({ jsonrpc: '2.0', id, method, ...(params && { params }) });
const toolCall = (id: number, name: string, args: Record<string, unknown>) => rpc(id, 'tools/call', { name, arguments: args });

test.before(async () => {
  const port = await freePort();
  upstream = await startUpstream(port);
  gw = await bootGateway({ env: { CYNODE_MCP_UPSTREAMS: `artifacts=http://127.0.0.1:${port}/mcp` }, roles: ['control', 'mcp'] });
  const base = gw.url('control');
  await call(base, '/v1/preferences/system/default/cloud_allowed', { method: 'PUT', json: { value: true } });
  worker = await registerWorker(base, (await createPsk(base)).secret, { node_id: 'cloud-us-east-1-07' });
  const jobId = String(
    (await submitJob(base, { task_id: 'task-j', requirements: { labels: ['cloud'] }, payload: { kind: 'echo' } })).body.id,
  );
  await eventually(async () => (await poll(base, worker)).body.jobs.some((j) => j.job_id === jobId), 10_000);
});
test.after.always(async () => {
  await gw?.stop();
  await new Promise((resolve) => upstream?.close(resolve));
});

test.serial('initialize, ping, unknown methods, batches and notifications answer as MCP says', async (t) => {
  const init = await post(
    rpc(1, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } }),
  );
  t.is(init.status, 200);
  t.like(init.body, { jsonrpc: '2.0', id: 1, result: { protocolVersion: '2025-06-18', capabilities: { tools: { listChanged: false } } } });
  const future = await post(
    rpc(2, 'initialize', { protocolVersion: '2999-01-01', capabilities: {}, clientInfo: { name: 't', version: '1' } }),
  );
  t.is(future.body.result.protocolVersion, LATEST_PROTOCOL_VERSION, 'an unknown version gets the latest');
  t.deepEqual((await post(rpc(3, 'ping'))).body, { jsonrpc: '2.0', id: 3, result: {} });
  t.deepEqual((await post(rpc(4, 'resources/list'))).body.error, { code: -32601, message: 'Method not found' });
  // Names of Object members are methods like any other unknown one, never a lookup into the prototype.
  for (const [i, method] of ['__proto__', 'constructor', 'toString', 'hasOwnProperty'].entries()) {
    const odd = await post(rpc(40 + i, method, {}));
    t.is(odd.status, 200, method);
    t.deepEqual(odd.body.error, { code: -32601, message: 'Method not found' }, method);
  }

  const batch = await post([rpc(5, 'ping'), { jsonrpc: '2.0', method: 'notifications/initialized' }, rpc(6, 'nope')]);
  t.is(batch.status, 200);
  t.deepEqual(
    batch.body.map((a: { id: number }) => a.id),
    [5, 6],
    'one answer per request, in order',
  );
  const note = await post({ jsonrpc: '2.0', method: 'notifications/initialized' });
  t.is(note.status, 202);
  t.is(note.body, '');
});

test.serial('the transport refuses what the stateless Streamable HTTP transport refuses', async (t) => {
  const accept = await post(rpc(1, 'ping'), { accept: 'application/json' });
  t.is(accept.status, 406);
  t.is(accept.body.error.code, -32000);
  const type = await call<any>(gw.url('mcp'), '/mcp', {
    token: worker.token,
    body: '{}',
    headers: { ...MCP_HEADERS, 'content-type': 'text/plain' },
  });
  t.is(type.status, 415);
  const shape = await post({ jsonrpc: '2.0', id: 1, method: 'ping', extra: true });
  t.is(shape.status, 400);
  t.is(shape.body.error.code, -32700);
  t.is((await post({ jsonrpc: '2.0', id: 1.5, method: 'ping' })).status, 400, 'ids are strings or integers');
  const big = await post(Array.from({ length: 101 }, (_, i) => rpc(i, 'ping')));
  t.is(big.status, 400);
  t.is(big.body.error.code, -32600);
  const initPlus = await post([
    rpc(1, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } }),
    rpc(2, 'ping'),
  ]);
  t.is(initPlus.status, 400);
  const version = await post(rpc(1, 'ping'), { 'mcp-protocol-version': '1900-01-01' });
  t.is(version.status, 400);
  t.is(version.body.error.code, -32000);
  const params = await post(rpc(1, 'tools/call', { arguments: {} }));
  t.is(params.status, 400);
  t.is(params.body.error.code, -32602, 'a known method with params that do not fit');
});

test.serial('a task-augmented call is refused before anything is decided or sent', async (t) => {
  const before = seen.length;
  const res = await post(rpc(1, 'tools/call', { name: 'artifacts.artifact_get', arguments: { task_id: 'task-j' }, task: { ttl: 1000 } }));
  t.is(res.status, 200);
  t.is(res.body.error.code, -32602);
  t.is(seen.length, before, 'the upstream was not called');
});

test.serial('an upstream answer that is not a tool result is upstream_error, audited as an error; a missing content is []', async (t) => {
  const listed = await post(toolCall(1, 'artifacts.artifact_list', { task_id: 'task-j' }));
  t.is(listed.body.error.code, -32002);
  t.is(listed.body.error.data.code, 'upstream_error');
  const put = await post(toolCall(2, 'artifacts.artifact_put', { task_id: 'task-j', name: 'x' }));
  t.is(put.body.error.data.code, 'upstream_error');
  const got = await post(toolCall(3, 'artifacts.artifact_get', { task_id: 'task-j' }));
  t.deepEqual(got.body.result, { structuredContent: { found: true }, content: [] });
  t.true(
    seen.filter((s) => s.method === 'tools/call').every((s) => typeof s.token === 'string'),
    'every call carried a forward token',
  );
  await gw.gateway.toolAudit.flush();
  const rows = (await gw.gateway.db
    .knex('tool_audit')
    .where({ task_id: 'task-j' })
    .orderBy('seq')
    .select('tool', 'outcome', 'error_code')) as {
    tool: string;
    outcome: string;
    error_code: string | null;
  }[];
  t.deepEqual(
    rows.map((r) => [r.tool, r.outcome, r.error_code]),
    [
      ['artifacts.artifact_list', 'error', 'upstream_error'],
      ['artifacts.artifact_put', 'error', 'upstream_error'],
      ['artifacts.artifact_get', 'ok', null],
    ],
  );
});

test.serial('a caller listing again within a second gets the list decided before, without new decisions', async (t) => {
  const decisions = async () => {
    await gw.gateway.decisionLog.flush();
    const [row] = (await gw.gateway.db
      .knex('decision_log')
      .where({ requested_by: `mcp:${worker.nodeId}`, path: 'cynode/mcp_tool_invoke/decision' })
      .count('* as n')) as { n: string }[];
    return Number(row!.n);
  };
  const names = (r: { body: { result: { tools: { name: string }[] } } }) => r.body.result.tools.map((x) => x.name).sort();
  await new Promise((r) => setTimeout(r, 1100)); // whatever was listed before is past its second
  const before = await decisions();
  const first = await post(rpc(1, 'tools/list'));
  t.deepEqual(names(first), ['api.call', 'artifacts.artifact_get', 'artifacts.artifact_list', 'artifacts.artifact_put']);
  const decided = (await decisions()) - before;
  t.is(decided, 4, 'one recorded decision per tool');
  t.deepEqual(names(await post(rpc(2, 'tools/list'))), names(first));
  t.is((await decisions()) - before, decided, 'the second list decided nothing');
  await new Promise((r) => setTimeout(r, 1100));
  await post(rpc(3, 'tools/list'));
  t.is((await decisions()) - before, 2 * decided, 'after a second it is decided again');
});

test.serial('a connection the upstream resets before answering is tried once more, with the same single-use token', async (t) => {
  resetNextCall = true;
  const before = seen.length;
  const got = await post(toolCall(1, 'artifacts.artifact_get', { task_id: 'task-j' }));
  t.deepEqual(got.body.result, { structuredContent: { found: true }, content: [] });
  const sent = seen.slice(before);
  t.is(sent.length, 2);
  t.is(sent[0]!.token, sent[1]!.token, 'not a new token: an upstream that read the first would refuse the second as a replay');
});
