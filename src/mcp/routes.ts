import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { isTaskId } from '../lib/ids.js';
import { LIMIT_PARAM, queryLimit, queryText } from '../server/query-params.js';
import { defineRoutes } from '../server/route.js';
import type { Worker } from '../workers/index.js';
import { type AgentTokens, issueAgentToken } from './agent-tokens.js';
import type { McpCaller } from './caller.js';
import type { McpGateway } from './service.js';

/** What the MCP routes need: the gateway, and what issuing an agent token reads. */
export interface McpRouteDeps {
  gateway: McpGateway;
  knex: Knex;
  agentTokens: AgentTokens;
}

/**
 * `/mcp` on the MCP port: POST carries JSON-RPC for a worker or agent token; every other
 * method is a JSON-RPC 405. `POST /v1/agent-tokens` (control plane, worker JWT) hands a worker
 * an agent token for a job it leases now; every use checks the lease again.
 */
export const MCP_ROUTES = defineRoutes<McpRouteDeps>([
  {
    method: 'post',
    path: '/mcp',
    roles: ['mcp'],
    access: 'agent',
    summary: 'MCP over Streamable HTTP (stateless, JSON answers): tools/list and tools/call, each gated by mcp.tool.invoke.',
    body: { schema: 'JsonRpc', raw: true },
    ok: { 200: { description: 'A JSON-RPC answer', schema: 'JsonRpc' }, 202: { description: 'A notification, accepted' } },
    errors: ['bad_request'],
    refusal: 'JsonRpc',
    db: true,
    decides: true,
    handler: (ctx, { gateway }) => gateway.serve(ctx, ctx.state.mcpCaller as McpCaller),
  },
  {
    method: 'all',
    path: '/mcp',
    roles: ['mcp'],
    access: 'public',
    documentedMethods: ['get', 'put', 'patch', 'delete', 'trace'],
    summary: 'Not supported: the endpoint is stateless, POST only (405 with a JSON-RPC error).',
    ok: {},
    errors: ['method_not_allowed'],
    refusal: 'JsonRpc',
    handler: (ctx, { gateway }) => gateway.refuseMethod(ctx),
  },
  {
    method: 'post',
    path: '/v1/agent-tokens',
    roles: ['control'],
    access: 'worker',
    summary: 'An agent token for a job the worker leases (MCP bearer for its agents).',
    body: { schema: 'AgentTokenRequest', handlerChecks: 'the request is checked with the lease it names' },
    ok: { 201: { description: 'The token', schema: 'Any' } },
    errors: ['job_not_leased'],
    db: true,
    async handler(ctx, deps) {
      ctx.body = await issueAgentToken({ knex: deps.knex, tokens: deps.agentTokens }, ctx.state.worker as Worker, ctx.state.body);
      ctx.status = 201;
    },
  },
  {
    method: 'get',
    path: '/v1/tool-audit',
    roles: ['control'],
    access: 'reader',
    summary: 'The MCP tool-call audit trail (hash-chained), newest first.',
    params: [
      { in: 'query', name: 'task_id', schema: { type: 'string' }, description: 'Only this task.' },
      { in: 'query', name: 'tool', schema: { type: 'string' }, description: 'Only this tool.' },
      { in: 'query', name: 'outcome', schema: { type: 'string', enum: ['ok', 'denied', 'error'] }, description: 'Only this outcome.' },
      LIMIT_PARAM,
    ],
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, { knex }) {
      const limit = queryLimit(ctx.query);
      const taskId = queryText(ctx.query, 'task_id');
      if (taskId !== undefined && !isTaskId(taskId)) throw new GatewayError('bad_request', 'task_id must be a task id');
      const tool = queryText(ctx.query, 'tool');
      const outcome = queryText(ctx.query, 'outcome');
      if (outcome !== undefined && !['ok', 'denied', 'error'].includes(outcome))
        throw new GatewayError('bad_request', 'outcome must be ok, denied or error');
      const q = knex('tool_audit').orderBy('seq', 'desc').limit(limit);
      if (taskId !== undefined) q.where({ task_id: taskId });
      if (tool !== undefined) q.where({ tool });
      if (outcome !== undefined) q.where({ outcome });
      const rows = (await q.select()) as Record<string, unknown>[];
      ctx.body = { records: rows.map(({ prev_hash: _p, hash: _h, ...r }) => ({ ...r, seq: Number(r.seq) })) };
    },
  },
]);
