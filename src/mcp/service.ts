import { ErrorCode } from '@modelcontextprotocol/sdk/types.js';
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
import type { LeaseLookup } from './leases.js';
import { createCallerAuthenticator, type McpCaller, type McpCallerAuthenticator } from './caller.js';
import { createToolCatalogue } from './catalogue.js';
import { rpcError } from './json-rpc.js';
import { createRpcMethods } from './rpc-methods.js';
import { createToolCall } from './tool-call.js';
import { createToolLister } from './tool-list.js';
import { readMessages } from './transport.js';
import type { Upstream, UpstreamClient } from './upstreams.js';

/** How long a caller's decided `tools/list` is answered again (see `createToolLister`). */
const LIST_REUSE_MS = 1000;

/** What the MCP gateway is built from. */
export interface McpGatewayDeps {
  /** Callers' live leases (see `createLeaseLookup`). */
  leases: LeaseLookup;
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
 * The MCP gateway: MCP over Streamable HTTP, stateless, JSON answers. One set of method
 * handlers serves every request (no server object per request): a caller sees in
 * `tools/list` only the tools `mcp.tool.invoke` lets it call, and every `tools/call` is
 * decided (and audited) before it goes to API Egress or to the configured upstream, with a
 * forward token the upstream's final gate checks. Upstream addresses come from config only.
 */
export function createMcpGateway(deps: McpGatewayDeps): McpGateway {
  const logger = deps.logger.child({ component: 'mcp' });
  const authenticate = createCallerAuthenticator(deps);
  const catalogue = createToolCatalogue({ upstreams: deps.upstreams, client: deps.client, discoveryTtlMs: deps.discoveryTtlMs, logger });
  const methods = createRpcMethods({
    callTool: createToolCall({ ...deps, catalogue, logger }),
    listTools: createToolLister({ catalogue, decisions: deps.decisions, visibleForMs: LIST_REUSE_MS }),
  });

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
      const read = readMessages(message, {
        accept: ctx.get('accept'),
        contentType: ctx.get('content-type'),
        protocolVersion: ctx.get('mcp-protocol-version') || undefined,
      });
      if ('refused' in read) return answer(ctx, read.refused);
      const answers = await Promise.all(read.requests.map((request) => methods.answer(caller, request)));
      if (answers.length === 0) {
        // Only notifications and responses: accepted, nothing to say.
        ctx.status = 202;
        ctx.body = '';
        ctx.remove('Content-Type');
        return;
      }
      ctx.status = 200;
      ctx.type = 'application/json';
      // One answer goes alone, as the SDK's transport sends it, even for a batch.
      ctx.body = JSON.stringify(answers.length === 1 ? answers[0] : answers);
    },
  };
}

function answer(ctx: Context, r: { status: number; body: unknown }): void {
  ctx.status = r.status;
  ctx.body = r.body;
}
