import { randomUUID } from 'node:crypto';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { DecisionService } from '../decisions/index.js';
import type { ApiCallGateway } from '../egress/index.js';
import { GatewayError, isGatewayError } from '../errors/index.js';
import type { ChainedLog } from '../lib/chained-log.js';
import { isUuid } from '../lib/ids.js';
import type { Logger } from '../logging/index.js';
import type { McpMetrics } from './metrics.js';
import { ENTRYPOINTS } from '../policy/index.js';
import type { ToolAuditEvent } from './audit.js';
import type { McpCaller } from './caller.js';
import type { LeaseLookup } from './leases.js';
import type { CatalogueTool, ToolCatalogue } from './catalogue.js';
import { MCP_DENIED, MCP_UPSTREAM_FAILED } from './errors.js';
import { type ToolInvokeContext, toolInvokeInput } from './policy-input.js';
import type { UpstreamClient } from './upstreams.js';

/** What one tools/call needs. */
export interface ToolCallDeps {
  /** The caller's live lease, looked up on every call (remembered for at most a second, dropped when the lease ends). */
  leases: LeaseLookup;
  decisions: DecisionService;
  apiCalls: ApiCallGateway;
  client: UpstreamClient;
  catalogue: ToolCatalogue;
  audit: ChainedLog<ToolAuditEvent>;
  maxArgumentBytes: number;
  logger: Logger;
  metrics?: McpMetrics;
}

/** The params of a `tools/call` request. */
export interface ToolCallParams {
  name: string;
  arguments?: Record<string, unknown>;
}

/** Serves one `tools/call`: the tool's result, or an McpError with a stable `data.code`. */
export type ToolCall = (caller: McpCaller, params: ToolCallParams) => Promise<Record<string, unknown>>;

type Outcome = ToolAuditEvent['outcome'];
type Args = Record<string, unknown>;

/**
 * One tools/call, in this order: the tool exists (-32602 `tool_unknown`), its arguments fit
 * `maxArgumentBytes` (-32602 `arguments_too_large`) and its input schema (-32602
 * `invalid_arguments`), an agent names no other job than its own (-32001), the caller's live
 * lease is looked up, `mcp.tool.invoke` decides (-32001 `policy_denied`), then API Egress or
 * the upstream (with a forward token) serves it; what fails past the gateway is -32002 with
 * the upstream's code. Every call, whatever its end, is one `tool_audit` row and one metric.
 */
export function createToolCall(deps: ToolCallDeps): ToolCall {
  const authorize = authorizer(deps);
  const dispatch = dispatcher(deps);
  return async (caller, params) => {
    const started = performance.now();
    const args = (params.arguments ?? {}) as Args;
    const event = auditEvent(caller, params.name);
    let known = false; // a tool name is a metric label only once the catalogue knows it
    const done = async (outcome: Outcome, code: string | null) => {
      deps.metrics?.mcpToolCalls.inc({ tool: known ? event.tool : 'unknown', outcome });
      event.outcome = outcome;
      event.error_code = code;
      event.latency_ms = performance.now() - started;
      await deps.audit.record(event);
    };
    try {
      const tool = await deps.catalogue.find(params.name);
      if (!tool) throw new McpError(ErrorCode.InvalidParams, `unknown tool: ${event.tool}`, { code: 'tool_unknown' });
      known = true;
      const { input, revision } = await authorize(caller, tool, args, event);
      const served = await dispatch(caller, tool, args, input, revision);
      await done(served.outcome, served.code);
      return served.result;
    } catch (err) {
      const refused = refusal(err, deps.logger);
      await done(refused.outcome, refused.code);
      throw refused.error;
    }
  };
}

/** The audit row of a call, filled in as the checks go; a call is denied until it is allowed. */
function auditEvent(caller: McpCaller, name: unknown): ToolAuditEvent {
  return {
    request_id: randomUUID(),
    at: new Date(),
    subject_id: caller.worker.nodeId,
    agent_type: caller.agentType,
    task_id: null,
    job_id: null,
    tool: String(name).slice(0, 200),
    outcome: 'denied',
    error_code: null,
    decision_id: null,
    reasons: [],
    revision: null,
    latency_ms: null,
  };
}

/** The checks between a known tool and its dispatch: size, schema, agent binding, lease, decision. */
function authorizer(deps: ToolCallDeps) {
  return async (caller: McpCaller, tool: CatalogueTool, args: Args, event: ToolAuditEvent) => {
    if (Buffer.byteLength(JSON.stringify(args)) > deps.maxArgumentBytes) {
      throw new McpError(ErrorCode.InvalidParams, `the arguments exceed ${deps.maxArgumentBytes} bytes`, { code: 'arguments_too_large' });
    }
    const invalid = deps.catalogue.validator(tool)(args);
    if (invalid !== undefined)
      throw new McpError(ErrorCode.InvalidParams, `invalid arguments for ${tool.name}: ${invalid}`, { code: 'invalid_arguments' });
    if (caller.bound && args.job_id !== undefined && args.job_id !== caller.bound.jobId) {
      Object.assign(event, { task_id: caller.bound.taskId, job_id: caller.bound.jobId, reasons: ['job_mismatch'] });
      throw new McpError(MCP_DENIED, `${tool.name} denied: job_mismatch`, { code: 'policy_denied', reasons: ['job_mismatch'] });
    }
    const lease = await leaseFor(deps.leases, caller, args);
    Object.assign(event, { task_id: lease.task_id || null, job_id: lease.job_id });
    // Only the task argument reaches the policy (and the decision log), never the payload.
    const input = toolInvokeInput(caller, tool, { ...lease, arguments: typeof args.task_id === 'string' ? { task_id: args.task_id } : {} });
    const { decision, decisionId, revision } = await deps.decisions.decide(ENTRYPOINTS.mcpToolInvoke, input, `mcp:${caller.worker.nodeId}`);
    Object.assign(event, { decision_id: decisionId, revision, reasons: decision.reasons });
    if (!decision.allow) {
      throw new McpError(MCP_DENIED, `${tool.name} denied: ${decision.reasons.join(', ') || 'no rule allowed it'}`, {
        code: 'policy_denied',
        reasons: decision.reasons,
        decision_id: decisionId,
      });
    }
    return { input, revision };
  };
}

/**
 * The job behind a call: by job_id when the tool takes one, else the caller's live lease on
 * the task named. An agent acts for the task and job its token names, whatever the arguments say.
 */
async function leaseFor(leases: LeaseLookup, caller: McpCaller, args: Args): Promise<Omit<ToolInvokeContext, 'arguments'>> {
  const task = caller.bound?.taskId ?? (typeof args.task_id === 'string' ? args.task_id : '');
  const jobId = caller.bound?.jobId ?? (isUuid(args.job_id) ? args.job_id : null);
  const job = await leases.find(caller.worker.nodeId, jobId ? { jobId } : { taskId: task });
  return job ? { task_id: job.taskId, job_id: job.jobId, lease_active: true } : { task_id: task, job_id: jobId, lease_active: false };
}

/** Sends an allowed call on: `api.call` to API Egress's first gate, any other tool to its upstream. */
function dispatcher(deps: ToolCallDeps) {
  return async (
    caller: McpCaller,
    tool: CatalogueTool,
    args: Args,
    input: unknown,
    revision: string,
  ): Promise<{ result: Record<string, unknown>; outcome: Outcome; code: string | null }> => {
    if (!tool.upstream) {
      const reply = await deps.apiCalls.call({ kind: 'worker', worker: caller.worker }, args);
      const result = {
        content: [{ type: 'text', text: JSON.stringify(reply.body) }],
        structuredContent: reply.body as unknown as Record<string, unknown>,
        isError: reply.body.status !== 'ok',
      };
      return { result, outcome: reply.body.status === 'ok' ? 'ok' : reply.body.status, code: reply.body.error?.code ?? null };
    }
    const result = await deps.client.request(
      tool.upstream,
      'tools/call',
      { name: tool.local, arguments: args },
      {
        subject: `mcp:${caller.worker.nodeId}`,
        entrypoint: ENTRYPOINTS.mcpToolInvoke,
        input,
        revision,
      },
    );
    const checked = toolResult(tool.upstream.name, result);
    return { result: checked, outcome: checked.isError === true ? 'error' : 'ok', code: null };
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * An upstream's answer to tools/call as MCP shapes a tool result: an object whose `content`
 * is a list (an empty one when absent), `structuredContent` an object and `isError` a boolean
 * when present. Anything else is the upstream's fault: `upstream_error`, and nothing passed on.
 */
function toolResult(upstream: string, result: unknown): Record<string, unknown> {
  const fits =
    isObject(result) &&
    (result.content === undefined || Array.isArray(result.content)) &&
    (result.structuredContent === undefined || isObject(result.structuredContent)) &&
    (result.isError === undefined || typeof result.isError === 'boolean');
  if (!fits) throw new GatewayError('upstream_error', `${upstream} answered tools/call with something that is not a tool result`);
  return result.content === undefined ? { ...result, content: [] } : result;
}

/**
 * What a failed call is audited as and answered with. The gateway's own refusals are
 * McpErrors already; anything else failed past the gateway (-32002), with the upstream's
 * code when it gave one, and an unexpected error is logged and answered as `internal`.
 */
function refusal(err: unknown, logger: Logger): { outcome: Outcome; code: string; error: McpError } {
  if (err instanceof McpError) {
    const data = err.data as { code?: string } | undefined;
    return { outcome: err.code === MCP_DENIED ? 'denied' : 'error', code: data?.code ?? 'invalid_params', error: err };
  }
  const e = isGatewayError(err) ? err : new GatewayError('internal', 'internal error');
  if (e.code === 'internal') logger.error({ err }, 'tool call failed');
  const details = (e.details ?? {}) as { reasons?: string[]; upstream_error?: string };
  const code = details.upstream_error ?? e.code;
  return {
    outcome: details.upstream_error === 'policy_denied' ? 'denied' : 'error',
    code,
    error: new McpError(MCP_UPSTREAM_FAILED, e.message, { code, ...(details.reasons && { reasons: details.reasons }) }),
  };
}
