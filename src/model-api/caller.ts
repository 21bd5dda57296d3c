import type { Middleware } from 'koa';
import { GatewayError } from '../errors/index.js';
import { bearerToken } from '../lib/bearer.js';
import { isUuid } from '../lib/ids.js';
import type { McpCaller } from '../mcp/index.js';
import type { LeaseLookup } from '../mcp/leases.js';
import type { Worker } from '../workers/index.js';

/** The header that names the job a worker's own token calls for. */
export const JOB_HEADER = 'x-cynode-job-id';

/** Who calls a drop-in model API: a worker (or an agent it runs) for one job it leases now. */
export interface ModelCaller {
  worker: Worker;
  /** `worker` for the worker's own token, else the agent type its agent token names. */
  agentType: string;
  taskId: string;
  jobId: string;
}

/** What the key check reads: the MCP gateway's caller check (worker JWTs, agent tokens) and its lease lookup. */
export interface ModelKeyDeps {
  authenticate: (authorization: string | undefined) => Promise<McpCaller>;
  leases: LeaseLookup;
}

/**
 * The `modelKey` authenticator: the key an SDK sends as `Authorization: Bearer` (OpenAI) or
 * `x-api-key` (Anthropic) must be an agent token or a worker JWT, verified as the MCP gateway
 * verifies them. Sets `ctx.state.modelKey`; which job the key may call for is checked with the
 * request (`callerFor`), after its body has passed the door.
 */
export function modelKeyAuth(deps: Pick<ModelKeyDeps, 'authenticate'>): Middleware {
  return async (ctx, next) => {
    const key = bearerToken(ctx.get('authorization')) ?? (ctx.get('x-api-key').trim() || undefined);
    if (!key) throw new GatewayError('unauthorized', 'send an agent token (or a worker token with X-Cynode-Job-Id) as the API key');
    ctx.state.modelKey = await deps.authenticate(`Bearer ${key}`);
    await next();
  };
}

/**
 * The caller of one request: an agent token acts for the job it is bound to, a worker JWT for
 * the job `X-Cynode-Job-Id` names. Either way the job must be leased by that worker now: a lease
 * that has ended is refused at once (lease ends are announced to every replica).
 */
export async function callerFor(key: McpCaller, jobHeader: string | undefined, leases: LeaseLookup): Promise<ModelCaller> {
  let jobId: string;
  if (key.bound) {
    if (jobHeader !== undefined && jobHeader !== key.bound.jobId)
      throw new GatewayError('policy_denied', 'the agent token is bound to another job', { reasons: ['job_mismatch'] });
    jobId = key.bound.jobId;
  } else {
    if (!isUuid(jobHeader))
      throw new GatewayError('job_not_leased', 'a worker token calls for a job it leases: send X-Cynode-Job-Id', {
        reasons: ['job_not_leased'],
      });
    jobId = jobHeader;
  }
  const lease = await leases.find(key.worker.nodeId, { jobId });
  if (!lease)
    throw new GatewayError('job_not_leased', `job ${jobId} is not leased by ${key.worker.nodeId}`, { reasons: ['job_not_leased'] });
  return { worker: key.worker, agentType: key.agentType, taskId: lease.taskId, jobId };
}
