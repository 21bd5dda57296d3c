import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Knex } from 'knex';
import type { Context } from 'koa';
import type { DecisionService } from '../decisions/index.js';
import type { ApiCallGateway } from '../egress/index.js';
import type { GatewayError } from '../errors/index.js';
import type { ChainedLog } from '../lib/chained-log.js';
import type { Logger } from '../logging/index.js';
import type { McpMetrics } from './metrics.js';
import { parseJsonBody, readRaw } from '../server/json-body.js';
import type { WorkerService } from '../workers/index.js';
import type { AgentTokens } from './agent-tokens.js';
import type { ToolAuditEvent } from './audit.js';
import { createCallerAuthenticator, type McpCaller, type McpCallerAuthenticator } from './caller.js';
import { createToolCatalogue } from './catalogue.js';
import { malformedRequest, rpcError } from './json-rpc.js';
import { createToolCall, type ToolCall } from './tool-call.js';
import { listVisibleTools, type ListedTool } from './tool-list.js';
import type { Upstream, UpstreamClient } from './upstreams.js';

/** What the MCP gateway is built from. */
export interface McpGatewayDeps {
  knex: Knex;
  logger: Logger;
  decisions: DecisionService;
  workers: WorkerService;
  apiCalls: ApiCallGateway;
  upstreams: readonly Upstream[];
  client: UpstreamClient;
  audit: ChainedLog<ToolAuditEvent>;
  agentTokens: AgentTokens;
  maxBodyBytes: number;
  maxArgumentBytes: number;
  /** How long an upstream's tool list is reused before it is asked again. */
  discoveryTtlMs: number;
  metrics?: McpMetrics;
}

/** The MCP gateway without its routes: who calls, and serving one request to the MCP endpoint. */
export interface McpGateway {
  /** Turns the `Authorization` header into a caller (worker JWT or agent token), or refuses. */
  authenticate: McpCallerAuthenticator;
  /** Answers one POST carrying JSON-RPC, as `caller`. */
  serve(ctx: Context, caller: McpCaller): Promise<void>;
  /** Answers any other method: 405 with a JSON-RPC error (stateless: no stream, no session). */
  refuseMethod(ctx: Context): void;
}

/**
 * The MCP gateway: standard MCP over Streamable HTTP (stateless, the official SDK). A caller
 * sees in `tools/list` only the tools `mcp.tool.invoke` lets it call, and every `tools/call`
 * is decided (and audited) before it goes to API Egress or to the configured upstream, with a
 * forward token the upstream's final gate checks. Upstream addresses come from config only.
 */
export function createMcpGateway(deps: McpGatewayDeps): McpGateway {
  const logger = deps.logger.child({ component: 'mcp' });
  const authenticate = createCallerAuthenticator(deps);
  const catalogue = createToolCatalogue({ upstreams: deps.upstreams, client: deps.client, discoveryTtlMs: deps.discoveryTtlMs, logger });
  const callTool = createToolCall({ ...deps, catalogue, logger });
  const listTools = (caller: McpCaller) => listVisibleTools({ catalogue, decisions: deps.decisions }, caller);

  return {
    authenticate,
    refuseMethod(ctx) {
      // Stateless: no server-to-client stream (GET) and no session to end (DELETE).
      ctx.set('Allow', 'POST');
      answer(ctx, rpcError(405, ErrorCode.ConnectionClosed, 'this MCP endpoint is stateless: POST only'));
    },
    async serve(ctx, caller) {
      const raw = await readRaw(ctx, deps.maxBodyBytes);
      let message: unknown;
      try {
        message = parseJsonBody(raw);
      } catch (err) {
        return answer(ctx, rpcError(400, ErrorCode.ParseError, `parse error: ${(err as GatewayError).message}`));
      }
      const malformed = malformedRequest(message);
      if (malformed) return answer(ctx, rpcError(400, ErrorCode.InvalidParams, `invalid params for ${malformed.method}`));
      await handOver(ctx, sdkServer(caller, listTools, callTool), message);
    },
  };
}

function answer(ctx: Context, r: { status: number; body: unknown }): void {
  ctx.status = r.status;
  ctx.body = r.body;
}

/** A fresh SDK server for one request, answering as this caller. */
function sdkServer(caller: McpCaller, listTools: (caller: McpCaller) => Promise<ListedTool[]>, callTool: ToolCall): Server {
  const server = new Server({ name: 'cynode-gateway', version: '1.0.0' }, { capabilities: { tools: { listChanged: false } } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: await listTools(caller) }));
  server.setRequestHandler(CallToolRequestSchema, (request) => callTool(caller, request.params));
  return server;
}

/** Lets the SDK answer the request on a stateless transport, closed with the response. */
async function handOver(ctx: Context, server: Server, message: unknown): Promise<void> {
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  ctx.respond = false;
  ctx.res.on('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(ctx.req, ctx.res, message);
}
