import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { issuedInFuture, JWT_ALG, type KeyStore, localKeySet } from '../keys/index.js';
import { isUuid } from '../lib/ids.js';
import type { Worker } from '../workers/index.js';

/** The JOSE `typ` of agent tokens: no worker, forward or other gateway JWT passes as one. */
export const AGENT_TOKEN_TYPE = 'cynode-agent+jwt';
/** Agent tokens are good at the MCP gateway only. */
export const AGENT_AUDIENCE = 'cynode-mcp';
/** The agent types a worker may issue tokens for (the worker itself calls as `worker`). */
export const AGENT_TYPES = ['sandbox', 'pm', 'pa'] as const;

// Verified agent tokens kept at most; past this, the oldest entry goes first.
const VERIFIED_CACHE_SIZE = 10_000;

/** What an agent token binds: whose agent, of which type, for which task and job. */
export interface AgentClaims {
  nodeId: string;
  sessionId: string;
  agentType: string;
  taskId: string;
  jobId: string;
}

/** Issues and verifies agent tokens with the gateway's signing keys. */
export interface AgentTokens {
  issue(claims: AgentClaims): Promise<{ token: string; expiresAt: Date }>;
  verify(token: string): Promise<AgentClaims>;
}

/**
 * Agent-scoped tokens: a worker asks for one per agent it runs for a job (a sandbox, a
 * project-manager or project-assistant agent), and the agent can then reach only the MCP
 * gateway, as that agent type, for that task and job, while the worker's session and lease last.
 */
export function createAgentTokens(deps: { keys: KeyStore; issuer: string; ttlMs: number }): AgentTokens {
  const keySet = localKeySet(deps.keys);
  const verifyOnce = async (token: string): Promise<AgentClaims & { expiresAtMs: number }> => {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, keySet, {
        issuer: deps.issuer,
        audience: AGENT_AUDIENCE,
        typ: AGENT_TOKEN_TYPE,
        algorithms: [JWT_ALG],
        requiredClaims: ['sub', 'sid', 'agt', 'task', 'job', 'exp'],
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired)
        throw new GatewayError('token_expired', 'the agent token has expired; ask the worker for a new one');
      throw new GatewayError('token_invalid', 'the agent token is not valid');
    }
    const { sub, sid, agt, task, job } = payload as Record<string, unknown>;
    if ([sub, sid, agt, task, job].some((v) => typeof v !== 'string') || issuedInFuture(payload.iat))
      throw new GatewayError('token_invalid', 'the agent token is not valid');
    return {
      nodeId: sub as string,
      sessionId: sid as string,
      agentType: agt as string,
      taskId: task as string,
      jobId: job as string,
      expiresAtMs: payload.exp! * 1000,
    };
  };

  // Verified tokens, so an agent's every call does not pay for an ES256 verification (as
  // worker tokens are kept): an entry lives no longer than its token, and the worker's
  // session and the lease are still checked on every call.
  const verified = new Map<string, AgentClaims & { expiresAtMs: number }>();

  return {
    async issue(c) {
      const key = deps.keys.current();
      const expiresAt = new Date(Math.floor((Date.now() + deps.ttlMs) / 1000) * 1000);
      const token = await new SignJWT({ sid: c.sessionId, agt: c.agentType, task: c.taskId, job: c.jobId })
        .setProtectedHeader({ alg: JWT_ALG, typ: AGENT_TOKEN_TYPE, kid: key.kid })
        .setIssuer(deps.issuer)
        .setAudience(AGENT_AUDIENCE)
        .setSubject(c.nodeId)
        .setIssuedAt()
        .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
        .sign(key.privateKey);
      return { token, expiresAt };
    },
    async verify(token) {
      const hit = verified.get(token);
      if (hit && hit.expiresAtMs > Date.now()) return claimsOf(hit);
      if (hit) verified.delete(token);
      const claims = await verifyOnce(token);
      if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value!);
      verified.set(token, claims);
      return claimsOf(claims);
    },
  };
}

/** The claims alone, so no caller holds (or changes) the cached entry. */
function claimsOf(c: AgentClaims): AgentClaims {
  return { nodeId: c.nodeId, sessionId: c.sessionId, agentType: c.agentType, taskId: c.taskId, jobId: c.jobId };
}

/** The answer to `POST /v1/agent-tokens`. */
export interface IssuedAgentToken {
  token: string;
  token_type: 'Bearer';
  expires_at: string;
  agent_type: string;
  task_id: string;
  job_id: string;
}

/**
 * Issues an agent token to a worker: `body` must be `{agent_type, job_id}` naming a job the
 * worker leases now (`bad_request`, else `job_not_leased`). The token is bound to that job's task.
 */
export async function issueAgentToken(deps: { knex: Knex; tokens: AgentTokens }, worker: Worker, body: unknown): Promise<IssuedAgentToken> {
  const request = body as Record<string, unknown> | null;
  if (request === null || typeof request !== 'object' || Object.keys(request).some((k) => k !== 'agent_type' && k !== 'job_id')) {
    throw new GatewayError('bad_request', 'send {"agent_type": "sandbox"|"pm"|"pa", "job_id": "<a job you lease>"}');
  }
  if (!(AGENT_TYPES as readonly unknown[]).includes(request.agent_type))
    throw new GatewayError('bad_request', `agent_type must be one of ${AGENT_TYPES.join(', ')}`);
  if (!isUuid(request.job_id)) throw new GatewayError('bad_request', 'job_id must be a job id');
  const job = (await deps
    .knex('jobs')
    .where({ id: request.job_id, leased_by: worker.nodeId, state: 'leased' })
    .andWhere('lease_expires_at', '>', new Date())
    .first('task_id')) as { task_id: string } | undefined;
  if (!job)
    throw new GatewayError('job_not_leased', `job ${request.job_id} is not leased by ${worker.nodeId}`, { reasons: ['job_not_leased'] });
  const claims = {
    nodeId: worker.nodeId,
    sessionId: worker.sessionId,
    agentType: request.agent_type as string,
    taskId: job.task_id,
    jobId: request.job_id,
  };
  const { token, expiresAt } = await deps.tokens.issue(claims);
  return {
    token,
    token_type: 'Bearer',
    expires_at: expiresAt.toISOString(),
    agent_type: claims.agentType,
    task_id: claims.taskId,
    job_id: claims.jobId,
  };
}
