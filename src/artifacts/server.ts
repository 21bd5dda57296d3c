import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { Knex } from 'knex';
import { GatewayError, isGatewayError } from '../errors/index.js';
import { FORWARD_TOKEN_HEADER, type FinalGate } from '../final-gate/index.js';
import type { Logger } from '../logging/index.js';
import { STDIO_TOKEN_META, stdioBoundBody } from '../mcp/upstreams.js';
import { ENTRYPOINTS } from '../policy/index.js';

/** The tools of the artifact server: files scoped to a task, kept in PostgreSQL. */
export const ARTIFACT_TOOLS = [
  {
    name: 'artifact_put',
    description: "Stores a text artifact under the caller's task (replacing one of the same name).",
    inputSchema: {
      type: 'object',
      properties: {
        task_id: { type: 'string', minLength: 1, maxLength: 256 },
        name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' },
        content: { type: 'string', maxLength: 262144 },
      },
      required: ['task_id', 'name', 'content'],
      additionalProperties: false,
    },
  },
  {
    name: 'artifact_get',
    description: "Reads a text artifact of the caller's task.",
    inputSchema: {
      type: 'object',
      properties: {
        task_id: { type: 'string', minLength: 1, maxLength: 256 },
        name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' },
      },
      required: ['task_id', 'name'],
      additionalProperties: false,
    },
  },
  {
    name: 'artifact_list',
    description: "Lists the artifacts of the caller's task.",
    inputSchema: {
      type: 'object',
      properties: { task_id: { type: 'string', minLength: 1, maxLength: 256 } },
      required: ['task_id'],
      additionalProperties: false,
    },
  },
] as const;

/** A running artifact server. */
export interface ArtifactServer {
  /** The MCP URL, or `stdio`. */
  url: string;
  /** Settles when the stdio client goes away (never, over HTTP). */
  closed: Promise<void>;
  close(): Promise<void>;
}

interface ToolCall {
  name: string;
  arguments: Record<string, unknown>;
}

type CallParams = { name?: unknown; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> };

const jsonRpcError = (res: ServerResponse, status: number, id: unknown, code: number, message: string, data?: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', id: id ?? null, error: { code, message, ...(data !== undefined && { data }) } }));
};

/** What `startArtifactServer` takes. */
export interface ArtifactServerOptions {
  knex: Knex;
  gate: FinalGate;
  logger: Logger;
  host: string;
  port: number;
  maxBodyBytes: number;
  /** `stdio`: serve the one client on stdin/stdout (a gateway that started this process). */
  transport?: 'http' | 'stdio';
  stdio?: { input: Readable; output: Writable };
}

/** What the transports share: the options and the component logger. */
interface Deps {
  options: ArtifactServerOptions;
  log: Logger;
}

type Authorize = (method: string, params: CallParams | undefined) => Promise<string>;

async function putArtifact(knex: Knex, call: ToolCall, caller: string) {
  const task = String(call.arguments.task_id);
  const content = String(call.arguments.content);
  const sha256 = createHash('sha256').update(content).digest('hex');
  const row = {
    task_id: task,
    name: String(call.arguments.name),
    content,
    sha256,
    size: Buffer.byteLength(content),
    written_by: caller,
    updated_at: new Date(),
  };
  await knex('artifacts').insert(row).onConflict(['task_id', 'name']).merge(['content', 'sha256', 'size', 'written_by', 'updated_at']);
  return { task_id: task, name: row.name, size: row.size, sha256 };
}

async function getArtifact(knex: Knex, call: ToolCall) {
  const task = String(call.arguments.task_id);
  const row = (await knex('artifacts')
    .where({ task_id: task, name: String(call.arguments.name) })
    .first('name', 'content', 'sha256', 'size')) as Record<string, unknown> | undefined;
  if (!row) throw new McpError(ErrorCode.InvalidParams, `no artifact '${String(call.arguments.name)}' in task ${task}`);
  return row;
}

async function listArtifacts(knex: Knex, call: ToolCall) {
  const task = String(call.arguments.task_id);
  const rows = (await knex('artifacts').where({ task_id: task }).orderBy('name').select('name', 'size', 'sha256', 'updated_at')) as Record<
    string,
    unknown
  >[];
  return { task_id: task, artifacts: rows };
}

const runTool = (knex: Knex, call: ToolCall, caller: string) =>
  call.name === 'artifact_put'
    ? putArtifact(knex, call, caller)
    : call.name === 'artifact_get'
      ? getArtifact(knex, call)
      : listArtifacts(knex, call);

// An MCP server answering the artifact tools; `authorize` answers the caller or refuses.
function mcpServer(knex: Knex, authorize: Authorize): Server {
  const server = new Server({ name: 'cynode-artifacts', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async (request) => {
    await authorize(request.method, request.params);
    return { tools: ARTIFACT_TOOLS.map((t) => ({ ...t })) };
  });
  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    const caller = await authorize(request.method, request.params);
    const call = { name: request.params.name, arguments: (request.params.arguments ?? {}) as Record<string, unknown> };
    if (!ARTIFACT_TOOLS.some((t) => t.name === call.name)) throw new McpError(ErrorCode.InvalidParams, `unknown tool ${call.name}`);
    const out = await runTool(knex, call, caller);
    return { content: [{ type: 'text', text: JSON.stringify(out) }], structuredContent: out as Record<string, unknown> };
  });
  return server;
}

// The final gate: the forward token must be bound to this request, and a tools/call is decided
// again on this server's own bundle and must be the call decided on. Answers the caller.
async function gateCheck(
  gate: FinalGate,
  token: string | undefined,
  body: Buffer | string,
  method: unknown,
  params: CallParams | undefined,
): Promise<string> {
  if (method !== 'tools/call') {
    await gate.verify(token, body);
    return 'gateway';
  }
  const { forward } = await gate.check(token, body);
  const input = forward.input as {
    subject?: { node_id?: string };
    resource?: { name?: string };
    context?: { arguments?: Record<string, unknown> };
  };
  if (forward.entrypoint !== ENTRYPOINTS.mcpToolInvoke || input.resource?.name !== params?.name) {
    throw new GatewayError('forward_body_mismatch', 'the forward token is not for this tool call');
  }
  for (const [key, value] of Object.entries(input.context?.arguments ?? {})) {
    if (params?.arguments?.[key] !== value) throw new GatewayError('forward_body_mismatch', `argument ${key} is not the one decided on`);
  }
  return String(input.subject?.node_id ?? 'gateway');
}

// A refusal as the JSON-RPC error the gateway reads: code -32001, data {code, reasons}.
function refusal(log: Logger, err: unknown) {
  const e = isGatewayError(err) ? err : new GatewayError('internal', 'internal error');
  if (e.code === 'internal') log.error({ err }, 'final gate failed');
  const reasons = (e.details as { reasons?: string[] } | undefined)?.reasons;
  return { status: e.status, message: e.message, data: { code: e.code, ...(reasons && { reasons }) } };
}

// One client, the gateway that started this process; the token rides in each request's _meta.
async function serveStdio({ options, log }: Deps): Promise<ArtifactServer> {
  const server = mcpServer(options.knex, async (method, params) => {
    const meta = params?._meta?.[STDIO_TOKEN_META];
    try {
      return await gateCheck(options.gate, typeof meta === 'string' ? meta : undefined, stdioBoundBody(method, params), method, params);
    } catch (err) {
      const r = refusal(log, err);
      throw new McpError(-32001, r.message, r.data);
    }
  });
  const transport = new StdioServerTransport(options.stdio?.input, options.stdio?.output);
  const closed = new Promise<void>((resolve) => {
    transport.onclose = resolve;
    (options.stdio?.input ?? process.stdin).once('end', resolve);
  });
  await server.connect(transport);
  return { url: 'stdio', closed, close: () => server.close() };
}

// One stateless POST /mcp: read the body, run the final gate, then let the SDK answer.
async function handleHttp({ options, log }: Deps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.url !== '/mcp') return jsonRpcError(res, 404, null, ErrorCode.InvalidRequest, 'not found');
  if (req.method !== 'POST') return jsonRpcError(res, 405, null, ErrorCode.InvalidRequest, 'this server is stateless: POST only');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > options.maxBodyBytes) return jsonRpcError(res, 413, null, ErrorCode.InvalidRequest, 'request too large');
    chunks.push(chunk);
  }
  const raw = Buffer.concat(chunks);
  let message: { id?: unknown; method?: unknown; params?: CallParams };
  try {
    message = JSON.parse(raw.toString('utf8')) as typeof message;
  } catch {
    return jsonRpcError(res, 400, null, ErrorCode.ParseError, 'parse error');
  }
  const token = req.headers[FORWARD_TOKEN_HEADER];
  let caller: string;
  try {
    caller = await gateCheck(options.gate, typeof token === 'string' ? token : undefined, raw, message.method, message.params);
  } catch (err) {
    const r = refusal(log, err);
    return jsonRpcError(res, r.status, message.id, -32001, r.message, r.data);
  }
  // Checked once per HTTP request, before the SDK sees it; each request gets its own server.
  const server = mcpServer(options.knex, () => Promise.resolve(caller));
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, message);
}

async function serveHttp(deps: Deps): Promise<ArtifactServer> {
  const { options, log } = deps;
  const http: HttpServer = createServer((req, res) => {
    handleHttp(deps, req, res).catch((err: unknown) => {
      log.error({ err }, 'artifact server request failed');
      if (!res.headersSent) jsonRpcError(res, 500, null, ErrorCode.InternalError, 'internal error');
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port, options.host, resolve);
  });
  return {
    url: `http://${options.host}:${(http.address() as AddressInfo).port}/mcp`,
    closed: new Promise<void>(() => undefined),
    close: () =>
      new Promise((resolve) => {
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
}

/**
 * A reference upstream MCP tool server and target service: it takes requests only from the
 * gateway (every request carries a forward token bound to its body), and before any
 * `tools/call` acts it re-decides `mcp.tool.invoke` on its own copy of the bundle, and
 * checks that the call is the one decided on (tool and task).
 */
export async function startArtifactServer(options: ArtifactServerOptions): Promise<ArtifactServer> {
  const deps: Deps = { options, log: options.logger.child({ component: 'artifact-server' }) };
  return options.transport === 'stdio' ? serveStdio(deps) : serveHttp(deps);
}
