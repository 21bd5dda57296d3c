import type { Knex } from 'knex';
import type { DecisionService } from '../decisions/index.js';
import type { Logger } from '../logging/index.js';
import type { PolicyEngine } from '../policy/index.js';
import type { Worker } from '../workers/index.js';
import type { AuditLog } from './audit.js';
import type { Usage } from './pricing.js';

/** Who is calling: a worker by its JWT, or the orchestrator by the admin token (direct routing). */
export type ApiCaller = { kind: 'worker'; worker: Worker } | { kind: 'orchestrator'; id: string };

/** The answer of `api.call`, allowed or not: the envelope every caller reads. */
export interface ApiCallAnswer {
  request_id: string;
  status: 'ok' | 'denied' | 'error';
  result: unknown;
  error: { code: string; message: string; reasons?: string[]; details?: Record<string, unknown> } | null;
  usage: Usage | null;
  cost_usd: number;
  model: string | null;
  price_version: string | null;
  decision_id: string | null;
}

/** An answer with its HTTP status (and Retry-After, when the caller should wait). */
export interface ApiCallReply {
  httpStatus: number;
  retryAfterS?: number;
  body: ApiCallAnswer;
}

/**
 * What the policy sees of a call (docs/policy-input.md, `api.call`). The first gate builds it;
 * the forward token carries it to the final gate, which decides on the same input again.
 */
export interface ApiCallInput {
  action: 'api.call';
  subject: Record<string, unknown> & { kind: string; id: string };
  resource: { provider: string; operation: string; model: string; stream: boolean; estimated_cost_usd: number };
  context: {
    task_id: string;
    job_id: string | null;
    user_id: string | null;
    project_id: string | null;
    group_id: string | null;
    region: string | null;
    preferences: Record<string, unknown>;
    requirements: Record<string, unknown>;
    budget: Record<string, unknown>;
  };
}

/** What both gates are built from. */
export interface GateDeps {
  knex: Knex;
  logger: Logger;
  decisions: DecisionService;
  policy: PolicyEngine;
  audit: AuditLog;
}

/** The audience of forward tokens addressed to API Egress. */
export const EGRESS_AUDIENCE = 'cynode-egress';
/** The header by which the egress role says its answer is the provider's, relayed (value `1`). */
export const RELAYED_HEADER = 'x-cynode-relayed';
/** Where the egress role takes forwarded calls. */
export const EGRESS_PATH = '/v1/egress/call';
