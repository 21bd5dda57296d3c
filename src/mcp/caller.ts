import { decodeProtectedHeader } from 'jose';
import { GatewayError } from '../errors/index.js';
import { bearerToken } from '../lib/bearer.js';
import type { Worker, WorkerService } from '../workers/index.js';
import { AGENT_TOKEN_TYPE, type AgentTokens } from './agent-tokens.js';

/**
 * Who calls the MCP gateway, as the policy sees it: a worker for itself (`agentType`
 * `worker`), or an agent the worker runs, bound to one of its jobs. The worker carries the
 * node and its live session; an agent's session is the one that asked for its token.
 */
export interface McpCaller {
  worker: Worker;
  agentType: string;
  /** The task and job an agent token names; an agent acts for these whatever its arguments say. */
  bound?: { taskId: string; jobId: string };
}

/** Turns an `Authorization` header into a caller, or throws `unauthorized` / `token_*`. */
export type McpCallerAuthenticator = (authorization: string | undefined) => Promise<McpCaller>;

/**
 * Authenticates MCP callers: the token's JOSE `typ` tells an agent token from a worker JWT,
 * and each is verified by its own issuer. An agent lives no longer than the worker session
 * that asked for it.
 */
export function createCallerAuthenticator(deps: { workers: WorkerService; agentTokens: AgentTokens }): McpCallerAuthenticator {
  return async (authorization) => {
    const token = bearerToken(authorization);
    if (!token) throw new GatewayError('unauthorized', 'a worker or agent token is required');
    let typ: unknown;
    try {
      typ = decodeProtectedHeader(token).typ;
    } catch {
      throw new GatewayError('token_invalid', 'the bearer token is not a gateway token');
    }
    if (typ !== AGENT_TOKEN_TYPE) return { worker: await deps.workers.authenticate(token), agentType: 'worker' };
    const claims = await deps.agentTokens.verify(token);
    const worker = await deps.workers.session(claims.nodeId, claims.sessionId);
    return { worker, agentType: claims.agentType, bound: { taskId: claims.taskId, jobId: claims.jobId } };
  };
}
