import { randomUUID } from 'node:crypto';
import type Router from '@koa/router';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ErrorCode, InitializeRequestSchema, ListToolsRequestSchema, McpError, PingRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { Ajv, type ValidateFunction } from 'ajv';
import { decodeProtectedHeader } from 'jose';
import type { Knex } from 'knex';
import type { DecisionService } from '../decisions/index.js';
import type { ApiCallGateway } from '../egress/index.js';
import { GatewayError, isGatewayError } from '../errors/index.js';
import type { ChainedLog } from '../lib/chained-log.js';
import type { Logger } from '../logging/index.js';
import { ENTRYPOINTS } from '../policy/index.js';
import { parseJsonBody, readRaw } from '../server/json-body.js';
import type { Worker, WorkerService } from '../workers/index.js';
import { AGENT_TOKEN_TYPE, type AgentTokens } from './agent-tokens.js';
import type { Metrics } from '../metrics/index.js';
import type { ToolAuditEvent } from './audit.js';
import type { Upstream, UpstreamClient, UpstreamTool } from './upstreams.js';

/** JSON-RPC error codes of the gateway's own refusals (the implementation-defined range). */
export const MCP_DENIED = -32001;
export const MCP_UPSTREAM_FAILED = -32002;

// The methods this server answers, by their request schema. The SDK reports a known method
// with malformed params as an internal error (-32603); it is the caller's mistake (-32602).
const REQUEST_SCHEMAS = new Map<string, { safeParse(v: unknown): { success: boolean } }>([
  ['initialize', InitializeRequestSchema],
  ['ping', PingRequestSchema],
  ['tools/list', ListToolsRequestSchema],
  ['tools/call', CallToolRequestSchema],
]);

/** The first request in a JSON-RPC message (or batch) whose params its method's schema refuses. */
function malformedRequest(message: unknown): { id?: unknown; method: string } | undefined {
  return (Array.isArray(message) ? message : [message]).find((m) => {
    const req = m as { id?: unknown; method?: unknown } | null;
    return req !== null && typeof req === 'object' && typeof req.method === 'string' && 'id' in req && REQUEST_SCHEMAS.get(req.method)?.safeParse(req).success === false;
  });
}

/** The `api.call` tool: the REST form's body as tool arguments. */
const API_CALL_TOOL = {
  name: 'api.call',
  description: 'Calls an external model provider through API Egress (policy, credential injection, budget, audit). The worker never holds the key.',
  inputSchema: {
    type: 'object',
    properties: {
      provider: { type: 'string' },
      operation: { type: 'string' },
      params: { type: 'object' },
      task_id: { type: 'string' },
      job_id: { type: 'string' },
    },
    required: ['provider', 'operation', 'params', 'task_id', 'job_id'],
    additionalProperties: false,
  },
};

interface ExportedTool {
  name: string;
  description?: string;
  inputSchema: Record<string, unknown>;
  upstream?: Upstream;
  /** The tool's own name on its upstream. */
  local: string;
}

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
  metrics?: Metrics;
}

/** Who called, as the policy sees it: a worker for itself, or an agent bound to one of its jobs. */
interface Caller {
  worker: Worker;
  agentType: string;
  bound?: { taskId: string; jobId: string };
}

/**
 * The MCP gateway: standard MCP over Streamable HTTP (stateless, the official SDK) at `/mcp`.
 * A worker sees in `tools/list` only the tools `mcp.tool.invoke` lets it call, and every
 * `tools/call` is decided (and audited) before it goes to API Egress or to the configured
 * upstream, with a forward token the upstream's final gate checks. Upstream addresses come
 * from config only.
 */
export function mcpRoutes(router: Router, deps: McpGatewayDeps): void {
  const log = deps.logger.child({ component: 'mcp' });
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validators = new Map<string, ValidateFunction>();
  const validatorFor = (tool: ExportedTool) => {
    const key = `${tool.name}:${JSON.stringify(tool.inputSchema)}`;
    let v = validators.get(key);
    if (!v) {
      try {
        v = ajv.compile(tool.inputSchema);
      } catch {
        throw new McpError(MCP_UPSTREAM_FAILED, `the input schema of ${tool.name} cannot be used`, { code: 'upstream_error' });
      }
      if (validators.size > 1000) validators.clear();
      validators.set(key, v);
    }
    return v;
  };

  const discovered = new Map<string, { at: number; tools: UpstreamTool[] }>();
  const upstreamTools = async (upstream: Upstream): Promise<UpstreamTool[]> => {
    const cached = discovered.get(upstream.name);
    if (cached && Date.now() - cached.at < deps.discoveryTtlMs) return cached.tools;
    try {
      const result = (await deps.client.request(upstream, 'tools/list', {}, { subject: 'gateway', entrypoint: 'mcp/tools/list', input: {}, revision: '' })) as {
        tools?: UpstreamTool[];
      };
      const tools = (result.tools ?? []).filter((t) => typeof t?.name === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(t.name) && t.inputSchema && typeof t.inputSchema === 'object');
      discovered.set(upstream.name, { at: Date.now(), tools });
      return tools;
    } catch (err) {
      // Fail closed: an upstream that cannot be asked contributes no tools until it answers.
      log.warn({ upstream: upstream.name, err: String((err as Error)?.message ?? err) }, 'upstream tool discovery failed');
      return cached?.tools ?? [];
    }
  };
  const catalogue = async (): Promise<ExportedTool[]> => {
    const lists = await Promise.all(deps.upstreams.map(async (u) => ({ u, tools: await upstreamTools(u) })));
    return [{ ...API_CALL_TOOL, local: 'api.call' }, ...lists.flatMap(({ u, tools }) => tools.map((t) => ({ ...t, name: `${u.name}.${t.name}`, upstream: u, local: t.name })))];
  };

  const inputFor = (caller: Caller, tool: ExportedTool, ctx: { task_id: string; job_id: string | null; lease_active: boolean; arguments: Record<string, unknown> }) => ({
    action: 'mcp.tool.invoke',
    subject: { kind: 'worker', node_id: caller.worker.nodeId, labels: caller.worker.capabilities.labels, agent_type: caller.agentType },
    resource: { tool: tool.name, server: tool.upstream?.name ?? 'gateway', name: tool.local },
    context: ctx,
  });

  // The job behind a call: by job_id when the tool takes one, else the caller's live lease on the task named.
  const leaseFor = async (caller: Caller, args: Record<string, unknown>): Promise<{ task_id: string; job_id: string | null; lease_active: boolean }> => {
    const { worker } = caller;
    // An agent acts for the task and job its token names, whatever the arguments say.
    const task = caller.bound?.taskId ?? (typeof args.task_id === 'string' ? args.task_id : '');
    const jobId = caller.bound?.jobId ?? (typeof args.job_id === 'string' && /^[0-9a-f-]{36}$/i.test(args.job_id) ? args.job_id : null);
    const q = deps.knex('jobs').where({ leased_by: worker.nodeId, state: 'leased' }).andWhere('lease_expires_at', '>', new Date());
    if (jobId) q.where({ id: jobId });
    else q.where({ task_id: task });
    const job = (await q.first('id', 'task_id')) as { id: string; task_id: string } | undefined;
    return job ? { task_id: job.task_id, job_id: job.id, lease_active: true } : { task_id: task, job_id: jobId, lease_active: false };
  };

  const serverFor = (caller: Caller) => {
    const server = new Server({ name: 'cynode-gateway', version: '1.0.0' }, { capabilities: { tools: { listChanged: false } } });
    server.setRequestHandler(ListToolsRequestSchema, async () => {
      const tools = await catalogue();
      const visible: ExportedTool[] = [];
      for (const tool of tools) {
        // Listing asks about the tool as such: any live lease, its own task.
        const { decision } = await deps.decisions.decide(
          ENTRYPOINTS.mcpToolInvoke,
          inputFor(caller, tool, { task_id: 'list', job_id: null, lease_active: true, arguments: { task_id: 'list' } }),
          `mcp:${caller.worker.nodeId}`,
        );
        if (decision.allow) visible.push(tool);
      }
      return { tools: visible.map(({ name, description, inputSchema }) => ({ name, ...(description && { description }), inputSchema })) };
    });
    server.setRequestHandler(CallToolRequestSchema, async (request) => {
      const started = performance.now();
      const args = (request.params.arguments ?? {}) as Record<string, unknown>;
      const event: ToolAuditEvent = {
        request_id: randomUUID(),
        at: new Date(),
        subject_id: caller.worker.nodeId,
        agent_type: caller.agentType,
        task_id: null,
        job_id: null,
        tool: String(request.params.name).slice(0, 200),
        outcome: 'denied',
        error_code: null,
        decision_id: null,
        reasons: [],
        revision: null,
        latency_ms: null,
      };
      let known = false; // a tool name is a metric label only once the catalogue knows it
      const done = async (outcome: ToolAuditEvent['outcome'], code: string | null) => {
        deps.metrics?.mcpToolCalls.inc({ tool: known ? event.tool : 'unknown', outcome });
        event.outcome = outcome;
        event.error_code = code;
        event.latency_ms = performance.now() - started;
        await deps.audit.record(event);
      };
      try {
        const tool = (await catalogue()).find((t) => t.name === request.params.name);
        if (!tool) throw new McpError(ErrorCode.InvalidParams, `unknown tool: ${event.tool}`, { code: 'tool_unknown' });
        known = true;
        if (Buffer.byteLength(JSON.stringify(args)) > deps.maxArgumentBytes) {
          throw new McpError(ErrorCode.InvalidParams, `the arguments exceed ${deps.maxArgumentBytes} bytes`, { code: 'arguments_too_large' });
        }
        const validate = validatorFor(tool);
        if (!validate(args)) {
          throw new McpError(ErrorCode.InvalidParams, `invalid arguments for ${tool.name}: ${ajv.errorsText(validate.errors)}`, { code: 'invalid_arguments' });
        }
        if (caller.bound && args.job_id !== undefined && args.job_id !== caller.bound.jobId) {
          Object.assign(event, { task_id: caller.bound.taskId, job_id: caller.bound.jobId, reasons: ['job_mismatch'] });
          throw new McpError(MCP_DENIED, `${tool.name} denied: job_mismatch`, { code: 'policy_denied', reasons: ['job_mismatch'] });
        }
        const lease = await leaseFor(caller, args);
        Object.assign(event, { task_id: lease.task_id || null, job_id: lease.job_id });
        // Only the task argument reaches the policy (and the decision log), never the payload.
        const input = inputFor(caller, tool, { ...lease, arguments: typeof args.task_id === 'string' ? { task_id: args.task_id } : {} });
        const { decision, decisionId, revision } = await deps.decisions.decide(ENTRYPOINTS.mcpToolInvoke, input, `mcp:${caller.worker.nodeId}`);
        Object.assign(event, { decision_id: decisionId, revision, reasons: decision.reasons });
        if (!decision.allow) {
          throw new McpError(MCP_DENIED, `${tool.name} denied: ${decision.reasons.join(', ') || 'no rule allowed it'}`, { code: 'policy_denied', reasons: decision.reasons, decision_id: decisionId });
        }
        if (!tool.upstream) {
          const reply = await deps.apiCalls.call({ kind: 'worker', worker: caller.worker }, args);
          await done(reply.body.status === 'ok' ? 'ok' : reply.body.status, reply.body.error?.code ?? null);
          return { content: [{ type: 'text', text: JSON.stringify(reply.body) }], structuredContent: reply.body as unknown as Record<string, unknown>, isError: reply.body.status !== 'ok' };
        }
        const result = (await deps.client.request(tool.upstream, 'tools/call', { name: tool.local, arguments: args }, {
          subject: `mcp:${caller.worker.nodeId}`,
          entrypoint: ENTRYPOINTS.mcpToolInvoke,
          input,
          revision,
        })) as Record<string, unknown>;
        await done(result.isError === true ? 'error' : 'ok', null);
        return result;
      } catch (err) {
        if (err instanceof McpError) {
          const data = err.data as { code?: string } | undefined;
          await done(err.code === MCP_DENIED ? 'denied' : 'error', data?.code ?? 'invalid_params');
          throw err;
        }
        const e = isGatewayError(err) ? err : new GatewayError('internal', 'internal error');
        if (e.code === 'internal') log.error({ err }, 'tool call failed');
        const details = (e.details ?? {}) as { reasons?: string[]; upstream_error?: string };
        await done(details.upstream_error === 'policy_denied' ? 'denied' : 'error', details.upstream_error ?? e.code);
        throw new McpError(MCP_UPSTREAM_FAILED, e.message, { code: details.upstream_error ?? e.code, ...(details.reasons && { reasons: details.reasons }) });
      }
    });
    return server;
  };

  const authenticate = async (token: string): Promise<Caller> => {
    let typ: unknown;
    try {
      typ = decodeProtectedHeader(token).typ;
    } catch {
      throw new GatewayError('token_invalid', 'the bearer token is not a gateway token');
    }
    if (typ !== AGENT_TOKEN_TYPE) return { worker: await deps.workers.authenticate(token), agentType: 'worker' };
    const claims = await deps.agentTokens.verify(token);
    // The agent lives no longer than the worker session that asked for it.
    const worker = await deps.workers.session(claims.nodeId, claims.sessionId);
    return { worker, agentType: claims.agentType, bound: { taskId: claims.taskId, jobId: claims.jobId } };
  };

  const rpcError = (status: number, code: number, message: string, data?: Record<string, unknown>) => ({
    status,
    body: { jsonrpc: '2.0', id: null, error: { code, message, ...(data && { data }) } },
  });

  router.all('/mcp', async (ctx) => {
    if (ctx.method !== 'POST') {
      // Stateless: no server-to-client stream (GET) and no session to end (DELETE).
      ctx.set('Allow', 'POST');
      const r = rpcError(405, ErrorCode.ConnectionClosed, 'this MCP endpoint is stateless: POST only');
      ctx.status = r.status;
      ctx.body = r.body;
      return;
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
    if (!match) throw new GatewayError('unauthorized', 'a worker or agent token is required');
    const caller = await authenticate(match[1]!);
    const raw = await readRaw(ctx, deps.maxBodyBytes);
    let message: unknown;
    try {
      message = parseJsonBody(raw);
    } catch (err) {
      const r = rpcError(400, ErrorCode.ParseError, `parse error: ${(err as GatewayError).message}`);
      ctx.status = r.status;
      ctx.body = r.body;
      return;
    }
    const malformed = malformedRequest(message);
    if (malformed) {
      const r = rpcError(400, ErrorCode.InvalidParams, `invalid params for ${malformed.method}`);
      ctx.status = r.status;
      ctx.body = r.body;
      return;
    }
    const server = serverFor(caller);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    ctx.respond = false;
    ctx.res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(ctx.req, ctx.res, message);
  });
}
