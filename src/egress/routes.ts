import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { FORWARD_TOKEN_HEADER } from '../final-gate/forward-token.js';
import { bearerToken } from '../lib/bearer.js';
import { isTaskId, isUuid } from '../lib/ids.js';
import { readRaw } from '../server/json-body.js';
import { type ResponseRelay, responseRelay } from '../server/relay.js';
import { defineRoutes, type RouteContext } from '../server/route.js';
import type { WorkerService } from '../workers/index.js';
import type { AuditLog } from './audit.js';
import { BUDGET_SCOPES, checkBudgetKey, parseBudgetBody } from './budgets.js';
import type { Ledger } from './ledger.js';
import type { SpendQueries } from './spend.js';
import type { EgressService } from './final-gate.js';
import type { ApiCallGateway } from './first-gate.js';
import { type ApiCaller, type ApiCallReply, EGRESS_PATH, RELAYED_HEADER } from './types.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest();
const CONTROL = ['control'] as const;
const MODEL_PARAM = {
  in: 'query' as const,
  name: 'model',
  schema: { type: 'string' },
  description: 'The budget for calls to this model only (absent: the budget for every model).',
};
const queryModel = (ctx: RouteContext) => (typeof ctx.query.model === 'string' ? ctx.query.model : undefined);

/**
 * Authenticates an `api.call` caller: the admin/orchestrator token (direct routing) or a
 * worker JWT. Sets `ctx.state.caller`; anything else is 401.
 */
export function apiCallerAuth(adminToken: string, workers: WorkerService): Middleware {
  const admin = sha256(adminToken);
  return async (ctx, next) => {
    const token = bearerToken(ctx.get('authorization'));
    if (!token) throw new GatewayError('unauthorized', 'a worker token or the orchestrator token is required');
    const caller: ApiCaller = timingSafeEqual(admin, sha256(token))
      ? { kind: 'orchestrator', id: 'admin' }
      : { kind: 'worker', worker: await workers.authenticate(token) };
    ctx.state.caller = caller;
    await next();
  };
}

function reply(ctx: RouteContext, r: ApiCallReply): void {
  ctx.status = r.httpStatus;
  if (r.retryAfterS !== undefined) ctx.set('Retry-After', String(Math.max(1, Math.ceil(r.retryAfterS))));
  ctx.body = r.body;
}

/** What an `api.call` may be refused with before the provider answers. */
export const API_CALL_ERRORS = [
  'job_not_leased',
  'job_not_found',
  'policy_denied',
  'budget_exceeded',
  'budget_missing',
  'rate_limited',
  'credential_missing',
  'credential_disabled',
  'credential_expired',
  'provider_error',
  'provider_auth_failed',
  'provider_bad_request',
  'provider_rate_limited',
  'provider_timeout',
  'provider_stream_interrupted',
  'provider_unreachable',
  'egress_unavailable',
  'audit_unavailable',
] as const;

/** `POST /v1/api/call` on the control plane: the REST form of the `api.call` tool (the first gate). */
export const API_CALL_ROUTES = defineRoutes<ApiCallGateway>([
  {
    method: 'post',
    path: '/v1/api/call',
    roles: CONTROL,
    access: 'workerOrAdmin',
    summary: 'The api.call tool (REST): worker JWT for a leased job, or the orchestrator token (direct routing).',
    body: {
      schema: 'ApiCall',
      handlerChecks: 'a malformed call is refused in the api.call answer shape and audited, like any other refusal',
    },
    ok: { 200: { description: "The provider's answer with usage and cost", schema: 'ApiCallAnswer' } },
    errors: [...API_CALL_ERRORS],
    refusal: 'ApiCallAnswer',
    db: true,
    decides: true,
    async handler(ctx, gateway) {
      reply(ctx, await gateway.call(ctx.state.caller as ApiCaller, ctx.state.body));
    },
  },
]);

/** The egress role's one entry: calls forwarded by the control plane, under a forward token bound to the body. */
export const EGRESS_ROUTES = defineRoutes<{ egress: EgressService; maxBodyBytes: number }>([
  {
    method: 'post',
    path: EGRESS_PATH,
    roles: ['egress'],
    access: 'forward',
    summary: 'API Egress, the final gate: a call the control plane forwarded under a forward token bound to the body.',
    body: { schema: 'Any', raw: true },
    ok: { 200: { description: "The provider's answer", schema: 'ApiCallAnswer' } },
    errors: [
      'forward_token_invalid',
      'forward_token_replayed',
      'forward_body_mismatch',
      'policy_denied',
      'budget_exceeded',
      'budget_missing',
      'rate_limited',
      'credential_missing',
      'credential_disabled',
      'credential_expired',
      'provider_error',
      'provider_timeout',
      'provider_unreachable',
      'audit_unavailable',
    ],
    refusal: 'ApiCallAnswer',
    db: true,
    decides: true,
    async handler(ctx, { egress, maxBodyBytes }) {
      const raw = await readRaw(ctx, maxBodyBytes);
      // A body that asks for a relay gets the provider's answer as it arrives, marked as such.
      let relay: ResponseRelay | undefined;
      const answer = await egress.handle(
        ctx.get(FORWARD_TOKEN_HEADER) || undefined,
        raw,
        () => (relay = responseRelay(ctx, { [RELAYED_HEADER]: '1' })),
      );
      if (!relay?.started) reply(ctx, answer);
    },
  },
]);

/** Admin: budgets (`PUT|GET /v1/budgets/{scope}/{id}`, `GET /v1/budgets`) and the audit trail (`GET /v1/audit`). */
export const BUDGET_AND_AUDIT_ROUTES = defineRoutes<{ ledger: Ledger; audit: AuditLog; spend: SpendQueries }>([
  {
    method: 'put',
    path: '/v1/budgets/{scope}/{id}',
    roles: CONTROL,
    access: 'admin',
    summary: 'Sets a budget (scope: task, user, group, project, subject): limit, period, reset, soft limit, optionally for one model.',
    params: [MODEL_PARAM],
    body: { schema: 'Budget', invalid: 'budget_invalid' },
    ok: { 200: { description: 'The budget', schema: 'BudgetAnswer' } },
    errors: ['budget_invalid'],
    db: true,
    async handler(ctx, { ledger }) {
      const parsed = parseBudgetBody(ctx.state.body as Record<string, unknown>, queryModel(ctx));
      const scope = checkBudgetKey(ctx.params.scope!, ctx.params.id!, parsed.model);
      const { limitUsd, ...options } = parsed;
      ctx.body = await ledger.setBudget(scope, ctx.params.id!, limitUsd, (ctx.state.principal as Principal).id, options);
    },
  },
  {
    method: 'get',
    path: '/v1/budgets/{scope}/{id}',
    roles: CONTROL,
    access: 'reader',
    summary: "A budget: limit, the current period's spend, reserved and remaining, and when it resets.",
    params: [MODEL_PARAM],
    ok: { 200: { description: 'OK', schema: 'BudgetAnswer' } },
    errors: ['budget_invalid', 'budget_not_found'],
    db: true,
    async handler(ctx, { ledger }) {
      const model = queryModel(ctx);
      const scope = checkBudgetKey(ctx.params.scope!, ctx.params.id!, model);
      const budget = await ledger.getBudget(scope, ctx.params.id!, model);
      if (!budget) throw new GatewayError('budget_not_found', `no ${scope} budget '${ctx.params.id}'${model ? ` for ${model}` : ''}`);
      ctx.body = budget;
    },
  },
  {
    method: 'get',
    path: '/v1/budgets',
    roles: CONTROL,
    access: 'reader',
    summary: 'Every budget, optionally of one scope.',
    params: [{ in: 'query', name: 'scope', schema: { type: 'string', enum: [...BUDGET_SCOPES] }, description: 'Only this scope.' }],
    ok: { 200: { description: 'OK', schema: 'BudgetList' } },
    errors: ['budget_invalid'],
    db: true,
    async handler(ctx, { ledger }) {
      const scope = typeof ctx.query.scope === 'string' ? checkBudgetKey(ctx.query.scope, 'x') : undefined;
      ctx.body = { budgets: await ledger.listBudgets(scope) };
    },
  },
  {
    method: 'get',
    path: '/v1/spend',
    roles: CONTROL,
    access: 'reader',
    summary: 'Settled api.call spend since a time (default today, UTC): total, per hour, top tasks and users, reservations held.',
    params: [
      {
        in: 'query',
        name: 'since',
        schema: { type: 'string', format: 'date-time' },
        description: 'From this time (at most 31 days back).',
      },
      {
        in: 'query',
        name: 'top',
        schema: { type: 'integer', minimum: 1, maximum: 100 },
        description: 'How many top tasks and users (default 10).',
      },
    ],
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, { spend }) {
      const today = new Date(new Date().toISOString().slice(0, 10) + 'T00:00:00Z');
      const since = typeof ctx.query.since === 'string' ? new Date(ctx.query.since) : today;
      if (Number.isNaN(since.getTime()) || Date.now() - since.getTime() > 31 * 864e5)
        throw new GatewayError('bad_request', 'since must be an ISO 8601 time within the last 31 days');
      const top = ctx.query.top === undefined ? 10 : Number(ctx.query.top);
      if (!Number.isInteger(top) || top < 1 || top > 100) throw new GatewayError('bad_request', 'top must be an integer from 1 to 100');
      ctx.body = await spend.report(since, top);
    },
  },
  {
    method: 'get',
    path: '/v1/audit',
    roles: CONTROL,
    access: 'reader',
    summary: 'The api.call audit trail (hash-chained).',
    params: [
      { in: 'query', name: 'task_id', schema: { type: 'string' }, description: 'Only this task.' },
      { in: 'query', name: 'request_id', schema: { type: 'string', format: 'uuid' }, description: 'Only this request.' },
      {
        in: 'query',
        name: 'after',
        schema: { type: 'string', pattern: '^\\d{1,18}$' },
        description: 'Records after this sequence number.',
      },
      {
        in: 'query',
        name: 'limit',
        schema: { type: 'integer', minimum: 1, maximum: 1000 },
        description: 'At most this many (1-1000, default 100).',
      },
    ],
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, { audit }) {
      const one = (name: string) => (typeof ctx.query[name] === 'string' ? (ctx.query[name] as string) : undefined);
      const limit = Number(one('limit') ?? 100);
      const after = one('after');
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw new GatewayError('bad_request', 'limit must be an integer from 1 to 1000');
      if (after !== undefined && !/^\d{1,18}$/.test(after)) throw new GatewayError('bad_request', 'after must be a sequence number');
      const taskId = one('task_id');
      if (taskId !== undefined && !isTaskId(taskId)) throw new GatewayError('bad_request', 'task_id must be a task id');
      const requestId = one('request_id');
      if (requestId !== undefined && !isUuid(requestId)) throw new GatewayError('bad_request', 'request_id must be a request id');
      const records = await audit.list({ taskId, requestId, limit, ...(after !== undefined && { afterSeq: Number(after) }) });
      ctx.body = { records };
    },
  },
]);
