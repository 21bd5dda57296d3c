import { type ErrorCode, GatewayError } from '../errors/index.js';
import type { ApiCallGateway } from '../egress/index.js';
import { responseRelay } from '../server/relay.js';
import type { RouteContext } from '../server/route.js';
import type { McpCaller } from '../mcp/index.js';
import type { LeaseLookup } from '../mcp/leases.js';
import { callerFor, JOB_HEADER, type ModelCaller } from './caller.js';

/** What the drop-in model APIs are served with: the first gate of `api.call`, and the callers' leases. */
export interface ModelApiDeps {
  apiCalls: ApiCallGateway;
  leases: LeaseLookup;
}

/** The request's caller, bound to the job its key (or X-Cynode-Job-Id) names and checked against its lease. */
const callerOf = (ctx: RouteContext, deps: ModelApiDeps): Promise<ModelCaller> =>
  callerFor(ctx.state.modelKey as McpCaller, ctx.get(JOB_HEADER) || undefined, deps.leases);

/**
 * One provider request through the drop-in surface: the body is the call's `params` as the SDK
 * sent it, task and job come from the caller's key, and the provider's answer is relayed as it
 * arrives (streamed or not). A refusal before the answer began is thrown, so the route's error
 * shape answers it in the provider's own form with the gateway's code and Retry-After.
 */
export async function relayModelCall(ctx: RouteContext, deps: ModelApiDeps, provider: string, operation: string): Promise<void> {
  const caller = await callerOf(ctx, deps);
  const relay = responseRelay(ctx);
  const reply = await deps.apiCalls.call(
    { kind: 'worker', worker: caller.worker },
    { provider, operation, params: ctx.state.body, task_id: caller.taskId, job_id: caller.jobId },
    relay,
  );
  if (relay.started) return;
  const error = reply.body.error ?? { code: 'internal', message: 'internal error' };
  throw new GatewayError(error.code as ErrorCode, error.message, {
    ...error.details,
    ...(error.reasons && { reasons: error.reasons }),
    ...(reply.retryAfterS !== undefined && { retry_after_s: reply.retryAfterS }),
  });
}

/** The models of `provider` the policy lets the caller use for its job, in name order. */
export async function allowedModels(ctx: RouteContext, deps: ModelApiDeps, provider: string): Promise<string[]> {
  const caller = await callerOf(ctx, deps);
  return deps.apiCalls.allowedModels({ kind: 'worker', worker: caller.worker }, { task_id: caller.taskId, job_id: caller.jobId }, provider);
}
