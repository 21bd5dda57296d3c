import { createHash, timingSafeEqual } from 'node:crypto';
import type Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { readJson, readRaw } from '../server/json-body.js';
import type { WorkerService } from '../workers/index.js';
import type { AuditLog } from './audit.js';
import { checkBudgetKey, type Ledger } from './ledger.js';
import { type ApiCaller, type ApiCallGateway, type ApiCallReply, EGRESS_PATH, type EgressService } from './service.js';
import { FORWARD_TOKEN_HEADER } from '../final-gate/forward-token.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest();

/**
 * Authenticates an `api.call` caller: the admin/orchestrator token (direct routing) or a
 * worker JWT. Sets `ctx.state.caller`; anything else is 401.
 */
export function apiCallerAuth(adminToken: string, workers: WorkerService): Middleware {
  const admin = sha256(adminToken);
  return async (ctx, next) => {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
    if (!match) throw new GatewayError('unauthorized', 'a worker token or the orchestrator token is required');
    const caller: ApiCaller = timingSafeEqual(admin, sha256(match[1]!))
      ? { kind: 'orchestrator', id: 'admin' }
      : { kind: 'worker', worker: await workers.authenticate(match[1]!) };
    ctx.state.caller = caller;
    await next();
  };
}

function reply(ctx: Context, r: ApiCallReply): void {
  ctx.status = r.httpStatus;
  if (r.retryAfterS !== undefined) ctx.set('Retry-After', String(Math.max(1, Math.ceil(r.retryAfterS))));
  ctx.body = r.body;
}

/** `POST /v1/api/call` on the control plane: the REST form of the `api.call` tool. */
export function apiCallRoutes(router: Router, auth: Middleware, gateway: ApiCallGateway, maxBodyBytes: number): void {
  router.post('/v1/api/call', auth, async (ctx) => {
    const body = await readJson(ctx, maxBodyBytes);
    reply(ctx, await gateway.call(ctx.state.caller as ApiCaller, body));
  });
}

/** The egress role's one entry: calls forwarded by the control plane, under a forward token. */
export function egressRoutes(router: Router, egress: EgressService, maxBodyBytes: number): void {
  router.post(EGRESS_PATH, async (ctx) => {
    const raw = await readRaw(ctx, maxBodyBytes);
    reply(ctx, await egress.handle(ctx.get(FORWARD_TOKEN_HEADER) || undefined, raw));
  });
}

const LIMIT_USD_MAX = 1_000_000_000;

/** Admin: budgets (`PUT|GET /v1/budgets/{scope}/{id}`, `GET /v1/budgets`) and the audit trail (`GET /v1/audit`). */
export function budgetAndAuditRoutes(router: Router, deps: { ledger: Ledger; audit: AuditLog; maxBodyBytes: number }): void {
  router.put('/v1/budgets/:scope/:id', async (ctx) => {
    const scope = checkBudgetKey(ctx.params.scope!, ctx.params.id!);
    const body = (await readJson(ctx, deps.maxBodyBytes)) as Record<string, unknown> | null;
    if (body === null || typeof body !== 'object' || Array.isArray(body) || Object.keys(body).some((k) => k !== 'limit_usd')) {
      throw new GatewayError('budget_invalid', 'send {"limit_usd": <number>}');
    }
    const limit = body.limit_usd;
    if (typeof limit !== 'number' || !Number.isFinite(limit) || limit < 0 || limit > LIMIT_USD_MAX) {
      throw new GatewayError('budget_invalid', `limit_usd must be a number from 0 to ${LIMIT_USD_MAX}`);
    }
    ctx.body = await deps.ledger.setBudget(scope, ctx.params.id!, limit, (ctx.state.principal as Principal).id);
  });
  router.get('/v1/budgets/:scope/:id', async (ctx) => {
    const scope = checkBudgetKey(ctx.params.scope!, ctx.params.id!);
    const budget = await deps.ledger.getBudget(scope, ctx.params.id!);
    if (!budget) throw new GatewayError('budget_not_found', `no ${scope} budget '${ctx.params.id}'`);
    ctx.body = budget;
  });
  router.get('/v1/budgets', async (ctx) => {
    const scope = typeof ctx.query.scope === 'string' ? checkBudgetKey(ctx.query.scope, 'x') : undefined;
    ctx.body = { budgets: await deps.ledger.listBudgets(scope) };
  });
  router.get('/v1/audit', async (ctx) => {
    const one = (name: string) => (typeof ctx.query[name] === 'string' ? (ctx.query[name] as string) : undefined);
    const limit = Number(one('limit') ?? 100);
    const after = one('after');
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new GatewayError('bad_request', 'limit must be an integer from 1 to 1000');
    if (after !== undefined && !/^\d{1,18}$/.test(after)) throw new GatewayError('bad_request', 'after must be a sequence number');
    const taskId = one('task_id');
    if (taskId !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,255}$/.test(taskId)) throw new GatewayError('bad_request', 'task_id must be a task id');
    const requestId = one('request_id');
    if (requestId !== undefined && !/^[0-9a-f-]{36}$/i.test(requestId)) throw new GatewayError('bad_request', 'request_id must be a request id');
    const records = await deps.audit.list({ taskId, requestId, limit, ...(after !== undefined && { afterSeq: Number(after) }) });
    ctx.body = { records };
  });
}
