import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Knex } from 'knex';
import type { DecisionService } from '../decisions/index.js';
import { GatewayError, isGatewayError, type ErrorCode } from '../errors/index.js';
import { createReplayCache, FORWARD_TOKEN_HEADER, signForwardToken, verifyForwardToken } from '../final-gate/forward-token.js';
import { type KeyStore, localKeySet } from '../keys/index.js';
import type { Logger } from '../logging/index.js';
import type { Metrics } from '../metrics/index.js';
import { ENTRYPOINTS, type PolicyEngine } from '../policy/index.js';
import type { PreferencesService } from '../preferences/index.js';
import { parseJsonBody } from '../server/json-body.js';
import type { CredentialStore } from '../vault/index.js';
import type { Worker } from '../workers/index.js';
import type { AuditEvent, AuditLog } from './audit.js';
import { callProvider } from './client.js';
import { type Budget, budgetFromRow, type BudgetRow, type Hold, type Ledger, type RateTake } from './ledger.js';
import { costOf, type ModelPrice, priceOf, type PriceTable, priceTableFrom, type Usage, worstCaseCost } from './pricing.js';
import { adapterFor, PROVIDERS } from './providers/registry.js';

/** The audience of forward tokens addressed to API Egress. */
export const EGRESS_AUDIENCE = 'cynode-egress';
/** Where the egress role takes forwarded calls. */
export const EGRESS_PATH = '/v1/egress/call';

/** Who is calling: a worker by its JWT, or the orchestrator by the admin token (direct routing, Option C). */
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

/** What the policy sees of a call (docs/policy-input.md, `api.call`). */
interface ApiCallInput {
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

interface Limits {
  subject?: { rpm?: number; tpm?: number };
  credential?: { rpm?: number; tpm?: number };
}

interface ParsedCall {
  provider: string;
  operation: string;
  params: unknown;
  task_id: string;
  job_id: string | null;
}

const FIELDS = new Set(['provider', 'operation', 'params', 'task_id', 'job_id']);
const TASK_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,255}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Checks the request body of `POST /v1/api/call`. */
export function parseApiCall(raw: unknown): ParsedCall {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new GatewayError('bad_request', 'send a JSON object');
  const r = raw as Record<string, unknown>;
  const extra = Object.keys(r).find((k) => !FIELDS.has(k));
  if (extra) throw new GatewayError('bad_request', `'${extra.slice(0, 64)}' is not an api.call field (task, user, budget and region come from the gateway)`);
  if (typeof r.provider !== 'string' || !NAME.test(r.provider)) throw new GatewayError('bad_request', 'provider must be a provider name');
  if (typeof r.operation !== 'string' || !NAME.test(r.operation)) throw new GatewayError('bad_request', 'operation must be an operation name');
  if (typeof r.task_id !== 'string' || !TASK_ID.test(r.task_id)) throw new GatewayError('bad_request', 'task_id must be 1-256 letters, digits or _.:@/-');
  if (r.job_id !== undefined && r.job_id !== null && (typeof r.job_id !== 'string' || !UUID.test(r.job_id))) throw new GatewayError('bad_request', 'job_id must be a job id');
  if (r.params === undefined) throw new GatewayError('bad_request', 'params is required');
  return { provider: r.provider, operation: r.operation, params: r.params, task_id: r.task_id, job_id: (r.job_id as string | undefined) ?? null };
}

const answer = (requestId: string, over: Partial<ApiCallAnswer>): ApiCallAnswer => ({
  request_id: requestId,
  status: 'ok',
  result: null,
  error: null,
  usage: null,
  cost_usd: 0,
  model: null,
  price_version: null,
  decision_id: null,
  ...over,
});

/** A refusal as an api.call answer: the error code's status, its reasons, Retry-After when given. */
function refusal(requestId: string, err: GatewayError, decisionId: string | null): ApiCallReply {
  const details = { ...(err.details ?? {}) } as Record<string, unknown>;
  const reasons = Array.isArray(details.reasons) ? (details.reasons as string[]) : undefined;
  delete details.reasons;
  const retry = typeof details.retry_after_s === 'number' ? details.retry_after_s : undefined;
  const denied = err.status === 402 || err.status === 403 || err.status === 429;
  return {
    httpStatus: err.status,
    ...(retry !== undefined && { retryAfterS: retry }),
    body: answer(requestId, {
      status: denied ? 'denied' : 'error',
      error: { code: err.code, message: err.message, ...(reasons && { reasons }), ...(Object.keys(details).length > 0 && { details }) },
      decision_id: decisionId,
    }),
  };
}

/** The most precise code for a policy denial: budgets and rate limits have their own. */
function denialCode(reasons: string[]): ErrorCode {
  if (reasons.includes('budget_exceeded')) return 'budget_exceeded';
  if (reasons.includes('budget_missing')) return 'budget_missing';
  return 'policy_denied';
}

const pricedOrUndefined = (table: PriceTable, provider: string, model: string): ModelPrice | undefined => {
  try {
    return priceOf(table, provider, model);
  } catch {
    return undefined;
  }
};

/** An audit record with nothing known yet but who asked; the gates fill it in as they go. */
function auditEvent(requestId: string, gate: AuditEvent['gate'], known: Partial<AuditEvent> & Pick<AuditEvent, 'subject_kind' | 'subject_id'>): AuditEvent {
  return {
    request_id: requestId,
    gate,
    at: new Date(),
    task_id: null,
    job_id: null,
    user_id: null,
    provider: null,
    operation: null,
    model_requested: null,
    model_served: null,
    stream: null,
    outcome: 'denied',
    error_code: null,
    decision_id: null,
    reasons: [],
    revision: null,
    credential_id: null,
    tokens: null,
    reserved_usd: null,
    cost_usd: null,
    price_version: null,
    attempts: null,
    latency_ms: null,
    ttft_ms: null,
    ...known,
  };
}

const toError = (err: unknown): GatewayError => (isGatewayError(err) ? err : new GatewayError('internal', 'internal error'));

interface Deps {
  knex: Knex;
  logger: Logger;
  decisions: DecisionService;
  policy: PolicyEngine;
  audit: AuditLog;
}

/** The first gate: `POST /v1/api/call` on the control plane. */
export interface ApiCallGateway {
  call(caller: ApiCaller, raw: unknown): Promise<ApiCallReply>;
  close(): void;
}

interface JobContext {
  task_id: string;
  user_id: string;
  project_id: string | null;
  group_id: string | null;
  preferences: Record<string, unknown>;
  requirements: Record<string, unknown>;
  budget_usd: string | null;
  state: string;
  leased_by: string | null;
  lease_expires_at: Date | null;
}

/**
 * Builds the policy input from server state (the worker's stored report, the job it leases,
 * the task's budgets, the user's effective preferences), asks the `api.call` policy, audits
 * a denial, and forwards an allowed call to API Egress with a forward token bound to the
 * body. Nothing the caller says about its task, user, budget or region is believed.
 */
export function createApiCallGateway(
  deps: Deps & {
    preferences: PreferencesService;
    ledger: Ledger;
    keys: KeyStore;
    issuer: string;
    forwardTokenTtlMs: number;
    /** API Egress's base URL (read per call: it is known only once the roles listen). */
    egressUrl: () => string;
    region: string;
    requestTimeoutMs: number;
    metrics?: Metrics;
    /**
     * The egress role when it runs in this process: the call is handed over without a
     * network hop, still as a forward token and the exact body, through the same final gate.
     */
    local?: EgressService;
  },
): ApiCallGateway {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  let target = { base: '', url: new URL('http://127.0.0.1') };
  const targetUrl = () => {
    const base = deps.egressUrl();
    if (target.base !== base) target = { base, url: new URL(EGRESS_PATH, base) };
    return target.url;
  };

  // One round trip: the job (by id, or the task's latest for direct routing) and the budgets
  // the call would be held against.
  const contextQuery = (byId: boolean) => `
    WITH j AS (
      SELECT task_id, user_id, project_id, group_id, preferences, requirements, budget_usd, state, leased_by, lease_expires_at
      FROM jobs WHERE ${byId ? 'id = ?::uuid' : 'task_id = ? ORDER BY created_at DESC'} LIMIT 1)
    SELECT (SELECT row_to_json(j) FROM j) AS job,
      (SELECT coalesce(json_agg(b), '[]'::json) FROM budgets b
        WHERE (b.scope = 'task' AND b.subject_id = ?) OR (b.scope = 'subject' AND b.subject_id = ?)
           OR (b.scope = 'user' AND b.subject_id = (SELECT user_id FROM j))) AS budgets`;
  const loadContext = async (caller: ApiCaller, req: ParsedCall, subjectId: string) => {
    const byId = caller.kind === 'worker' || req.job_id !== null;
    if (caller.kind === 'worker' && !req.job_id) {
      throw new GatewayError('job_not_leased', 'a worker calls for a job it leases: job_id is required', { reasons: ['job_not_leased'] });
    }
    const { rows } = (await deps.knex.raw(contextQuery(byId), [byId ? req.job_id : req.task_id, req.task_id, subjectId])) as {
      rows: { job: JobContext | null; budgets: BudgetRow[] }[];
    };
    const job = rows[0]?.job ?? undefined;
    const budgets = rows[0]?.budgets ?? [];
    if (caller.kind === 'worker') {
      const refuse = (why: string) => new GatewayError('job_not_leased', why, { reasons: ['job_not_leased'] });
      if (!job || job.state !== 'leased' || job.leased_by !== caller.worker.nodeId || !job.lease_expires_at || new Date(job.lease_expires_at) <= new Date()) {
        throw refuse(`job ${req.job_id} is not leased by ${caller.worker.nodeId}`);
      }
      if (job.task_id !== req.task_id) throw refuse(`job ${req.job_id} belongs to another task`);
    } else if (req.job_id) {
      if (!job) throw new GatewayError('job_not_found', `no job ${req.job_id}`);
      if (job.task_id !== req.task_id) throw new GatewayError('bad_request', `job ${req.job_id} belongs to another task`);
    }
    const budget: Record<'task' | 'user' | 'subject', Budget | null> = { task: null, user: null, subject: null };
    for (const row of budgets) budget[row.scope] = budgetFromRow(row);
    // A job's budget becomes its task's when the task has none yet.
    if (!budget.task && job?.budget_usd !== null && job?.budget_usd !== undefined) {
      await deps.ledger.ensureBudget('task', req.task_id, Number(job.budget_usd), 'job');
      budget.task = (await deps.ledger.getBudget('task', req.task_id)) ?? null;
    }
    return { job, budget };
  };

  const subjectOf = (caller: ApiCaller): ApiCallInput['subject'] => {
    if (caller.kind === 'orchestrator') return { kind: 'orchestrator', id: caller.id, labels: [] };
    const c = caller.worker.capabilities;
    return {
      kind: 'worker',
      id: c.node_id,
      node_id: c.node_id,
      labels: c.labels,
      ...(c.region !== undefined && { region: c.region }),
      inference_mode: c.inference_mode,
      supported_providers: c.supported_providers,
      supported_models: c.supported_models ?? [],
      ...(c.rate_limits !== undefined && { rate_limits: c.rate_limits }),
    };
  };

  const forward = (body: string, token: string): Promise<ApiCallReply> =>
    new Promise((resolve, reject) => {
      const req = http.request(
        targetUrl(),
        {
          agent,
          method: 'POST',
          timeout: deps.requestTimeoutMs,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), [FORWARD_TOKEN_HEADER]: token },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            try {
              const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ApiCallAnswer | { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } };
              const retry = Number(res.headers['retry-after']);
              if ('request_id' in parsed) resolve({ httpStatus: res.statusCode ?? 502, ...(retry > 0 && { retryAfterS: retry }), body: parsed });
              else reject(new GatewayError(parsed.error.code, `API Egress refused the call: ${parsed.error.message}`, parsed.error.details));
            } catch {
              reject(new GatewayError('egress_unavailable', 'API Egress answered with something that is not JSON'));
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => reject(isGatewayError(err) ? err : new GatewayError('egress_unavailable', `API Egress cannot be reached: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
      req.end(body);
    });

  return {
    async call(caller, raw) {
      const requestId = randomUUID();
      const started = performance.now();
      const subject = subjectOf(caller);
      const event = auditEvent(requestId, 'gateway', { subject_kind: caller.kind, subject_id: subject.id });
      // A provider name from the request is a label only once the registry knows it.
      const count = (outcome: string, code: string) =>
        deps.metrics?.apiCalls.inc({ caller: caller.kind, provider: event.provider && Object.hasOwn(PROVIDERS, event.provider) ? event.provider : 'unknown', outcome, code });
      const refuse = async (err: GatewayError): Promise<ApiCallReply> => {
        const reply = refusal(requestId, err, event.decision_id);
        event.outcome = reply.body.status === 'denied' ? 'denied' : 'error';
        event.error_code = err.code;
        if (reply.body.error?.reasons) event.reasons = reply.body.error.reasons;
        event.latency_ms = performance.now() - started;
        count(event.outcome, err.code);
        await deps.audit.record(event);
        return reply;
      };
      try {
        const req = parseApiCall(raw);
        Object.assign(event, { task_id: req.task_id, job_id: req.job_id, provider: req.provider, operation: req.operation });
        const adapter = adapterFor(req.provider, req.operation);
        const prepared = adapter.prepare(req.operation, req.params);
        Object.assign(event, { model_requested: prepared.model, stream: prepared.stream });
        const { job, budget: budgets } = await loadContext(caller, req, subject.id);
        event.user_id = job?.user_id ?? null;
        const bundle = deps.policy.bundleData();
        const table = priceTableFrom(bundle?.data);
        event.price_version = table.version;
        // An unpriced model is the policy's to refuse first (its catalogue should list priced
        // models only); if the policy allows it anyway, the call still cannot be reserved.
        const price = pricedOrUndefined(table, req.provider, prepared.model);
        const estimate = price ? worstCaseCost(prepared.inputChars, prepared.maxOutputTokens, price) : 0;
        event.reserved_usd = estimate;
        const view = (b: (typeof budgets)['task']) => b && { limit_usd: b.limit_usd, spent_usd: b.spent_usd, reserved_usd: b.reserved_usd, remaining_usd: b.remaining_usd };
        const input: ApiCallInput = {
          action: 'api.call',
          subject,
          resource: { provider: req.provider, operation: req.operation, model: prepared.model, stream: prepared.stream, estimated_cost_usd: estimate },
          context: {
            task_id: req.task_id,
            job_id: req.job_id,
            user_id: job?.user_id ?? null,
            project_id: job?.project_id ?? null,
            group_id: job?.group_id ?? null,
            region: caller.kind === 'worker' ? (caller.worker.capabilities.region ?? null) : deps.region,
            preferences: deps.preferences.resolve({
              groupId: job?.group_id ?? null,
              userId: job?.user_id ?? '',
              projectId: job?.project_id ?? null,
              task: job?.preferences ?? {},
            }),
            requirements: job?.requirements ?? {},
            budget: { task: view(budgets.task), user: view(budgets.user), subject: view(budgets.subject) },
          },
        };
        const { decision, decisionId, revision } = await deps.decisions.decide(ENTRYPOINTS.apiCall, input, `${caller.kind}:${subject.id}`);
        Object.assign(event, { decision_id: decisionId, revision, reasons: decision.reasons });
        if (!decision.allow) {
          return await refuse(new GatewayError(denialCode(decision.reasons), `api.call denied: ${decision.reasons.join(', ') || 'no rule allowed it'}`, { reasons: decision.reasons }));
        }
        if (!price) priceOf(table, req.provider, prepared.model);
        const body = JSON.stringify({ request_id: requestId, provider: req.provider, operation: req.operation, params: req.params });
        const token = await signForwardToken(
          deps.keys.current(),
          { issuer: deps.issuer, audience: EGRESS_AUDIENCE, subject: `${caller.kind}:${subject.id}`, entrypoint: ENTRYPOINTS.apiCall, input, revision },
          body,
          deps.forwardTokenTtlMs,
        );
        // The egress role audits what happens from here, allowed or not.
        const reply = deps.local ? await deps.local.handle(token, Buffer.from(body)) : await forward(body, token);
        reply.body.decision_id ??= decisionId;
        count(reply.body.status, reply.body.error?.code ?? '');
        return reply;
      } catch (err) {
        const e = toError(err);
        if (e.code === 'internal') deps.logger.error({ err, requestId }, 'api.call failed');
        return refuse(e);
      }
    },
    close: () => agent.destroy(),
  };
}

/** The final gate: API Egress on its own port. */
export interface EgressService {
  /** Takes one forwarded call: verifies, decides again, reserves, injects the credential, calls, settles, audits. */
  handle(token: string | undefined, rawBody: Buffer): Promise<ApiCallReply>;
  /** Charges lapsed reservations; runs on a timer. */
  startReaper(intervalMs: number): { stop(): void };
  /** Resolves once every settlement started so far has landed (shutdown, tests). */
  settled(): Promise<void>;
}

/** Where each provider is reached. */
export type ProviderUrls = Readonly<Record<string, string>>;

export function createEgressService(
  deps: Deps & {
    ledger: Ledger;
    credentials: CredentialStore;
    keys: KeyStore;
    issuer: string;
    forwardTokenTtlMs: number;
    providerUrls: ProviderUrls;
    call: { connectTimeoutMs: number; idleTimeoutMs: number; maxRetries: number; maxRetryWaitMs: number };
    reservationTtlMs: number;
    metrics?: Metrics;
  },
): EgressService {
  const log = deps.logger.child({ component: 'egress' });
  const keySet = localKeySet(deps.keys);
  const replay = createReplayCache();
  // Settlement runs after the answer is sent: until it lands, the call's worst case stays
  // reserved, so other calls see less budget, never more. If it cannot land (the database is
  // down, the process dies), the reservation lapses and is charged in full.
  const settling = new Set<Promise<unknown>>();
  const settleLater = (requestId: string, cost: number, state: 'settled' | 'released', tokenRefund: number) => {
    const p = deps.ledger
      .settle(requestId, cost, state, tokenRefund)
      .catch((err: unknown) => log.error({ requestId, err: String((err as Error)?.message ?? err) }, 'settling a reservation failed; it will be charged in full when it lapses'))
      .finally(() => settling.delete(p));
    settling.add(p);
  };

  return {
    async handle(token, rawBody) {
      const started = performance.now();
      const forward = await verifyForwardToken(token, rawBody, {
        keys: keySet,
        issuer: deps.issuer,
        audience: EGRESS_AUDIENCE,
        replay,
        maxTtlMs: deps.forwardTokenTtlMs + 1000,
      });
      if (forward.entrypoint !== ENTRYPOINTS.apiCall) throw new GatewayError('forward_token_invalid', 'the forward token is not for api.call');
      // The same door as the control plane's, should a signed body ever get past that one.
      const body = parseJsonBody(rawBody) as { request_id?: unknown; provider?: unknown; operation?: unknown; params?: unknown } | null;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new GatewayError('bad_request', 'the forwarded body is not a JSON object');
      const input = forward.input as ApiCallInput;
      if (typeof body.request_id !== 'string' || !UUID.test(body.request_id)) throw new GatewayError('bad_request', 'request_id is missing');
      const requestId = body.request_id;
      const ctx = input.context;
      const event = auditEvent(requestId, 'egress', {
        subject_kind: input.subject.kind,
        subject_id: input.subject.id,
        task_id: ctx.task_id,
        job_id: ctx.job_id,
        user_id: ctx.user_id,
        provider: input.resource.provider,
        operation: input.resource.operation,
        model_requested: input.resource.model,
        stream: input.resource.stream,
      });
      const finish = async (reply: ApiCallReply, err?: GatewayError): Promise<ApiCallReply> => {
        event.outcome = reply.body.status;
        deps.metrics?.egressCalls.inc({ provider: event.provider ?? '', operation: event.operation ?? '', outcome: event.outcome, code: err?.code ?? '' });
        if (err) event.error_code = err.code;
        if (reply.body.error?.reasons) event.reasons = reply.body.error.reasons;
        event.latency_ms = performance.now() - started;
        await deps.audit.record(event);
        return reply;
      };
      let reserved = false;
      let estimatedTokens = 0;
      try {
        if (body.provider !== input.resource.provider || body.operation !== input.resource.operation) {
          throw new GatewayError('forward_body_mismatch', 'the forwarded call is not the one the gateway decided on');
        }
        const { decision, decisionId, revision } = await deps.decisions.decide(ENTRYPOINTS.apiCall, input, `egress:${input.subject.kind}:${input.subject.id}`);
        Object.assign(event, { decision_id: decisionId, revision, reasons: decision.reasons });
        if (!decision.allow) {
          throw new GatewayError(denialCode(decision.reasons), `denied by the final gate: ${decision.reasons.join(', ') || 'no rule allowed it'}`, { reasons: decision.reasons });
        }
        const adapter = adapterFor(input.resource.provider, input.resource.operation);
        const prepared = adapter.prepare(input.resource.operation, body.params);
        if (prepared.model !== input.resource.model || prepared.stream !== input.resource.stream) {
          throw new GatewayError('forward_body_mismatch', 'the forwarded parameters are not the ones the gateway decided on');
        }
        const table = priceTableFrom(deps.policy.bundleData()?.data);
        const price = priceOf(table, input.resource.provider, prepared.model);
        const amount = worstCaseCost(prepared.inputChars, prepared.maxOutputTokens, price);
        Object.assign(event, { price_version: table.version, reserved_usd: amount });

        const credential = await deps.credentials.revealFor(input.resource.provider, { user: ctx.user_id, group: ctx.group_id });
        event.credential_id = credential.info.id;

        const limits = ((decision as unknown as { limits?: Limits }).limits ?? {}) as Limits;
        // Tokens the call may use: the input bounded by its characters' quarter (the usual
        // ratio; settlement refunds what it did not use) plus the output cap.
        estimatedTokens = Math.ceil(prepared.inputChars / 4) + prepared.maxOutputTokens;
        const takes: RateTake[] = [];
        const take = (key: string, limit: number | undefined, amountTaken: number, tokens: boolean) => {
          if (typeof limit === 'number' && Number.isFinite(limit)) takes.push({ key, limit, amount: amountTaken, tokens });
        };
        const who = `${input.subject.kind}:${input.subject.id}`;
        take(`rpm:subject:${who}`, limits.subject?.rpm, 1, false);
        take(`tpm:subject:${who}`, limits.subject?.tpm, estimatedTokens, true);
        take(`rpm:credential:${credential.info.id}`, limits.credential?.rpm, 1, false);
        take(`tpm:credential:${credential.info.id}`, limits.credential?.tpm, estimatedTokens, true);
        const holds: Hold[] = [
          { scope: 'task', subject_id: ctx.task_id, required: true },
          ...(ctx.user_id ? [{ scope: 'user' as const, subject_id: ctx.user_id, required: false }] : []),
          { scope: 'subject', subject_id: input.subject.id, required: false },
        ];
        const refused = await deps.ledger.admit(requestId, holds, amount, takes, new Date(Date.now() + deps.reservationTtlMs));
        if (refused?.reason === 'rate_limited') {
          throw new GatewayError('rate_limited', `rate limit ${refused.key.replace(/:[^:]*$/, '')} reached for this window`, {
            reasons: ['rate_limited'],
            retry_after_s: Math.ceil(refused.retryAfterMs / 1000),
          });
        }
        if (refused?.reason === 'budget_exceeded') {
          throw new GatewayError('budget_exceeded', `the ${refused.scope} budget cannot cover this call's worst case of $${amount}`, {
            reasons: ['budget_exceeded'],
            remaining_usd: refused.remainingUsd,
          });
        }
        if (refused?.reason === 'budget_missing') throw new GatewayError('budget_missing', `the ${refused.scope} has no budget`, { reasons: ['budget_missing'] });
        if (refused?.reason === 'replayed') throw new GatewayError('forward_token_replayed', 'this call was already made');
        reserved = true;

        const url = deps.providerUrls[input.resource.provider];
        if (!url) throw new GatewayError('provider_unreachable', `no endpoint is configured for ${input.resource.provider}`);
        const outcome = await callProvider(adapter, input.resource.operation, prepared, { baseUrl: url, secret: credential.secret, ...deps.call });
        const cost = costOf(outcome.usage, price);
        deps.metrics?.egressSeconds.observe({ provider: input.resource.provider, operation: input.resource.operation }, outcome.latencyMs / 1000);
        deps.metrics?.egressSpendUsd.inc({ provider: input.resource.provider }, cost);
        const used = outcome.usage.input_tokens + outcome.usage.cached_input_tokens + outcome.usage.cache_write_tokens + outcome.usage.output_tokens;
        if (cost > amount) log.warn({ requestId, cost, amount }, 'a provider billed more than the worst case reserved');
        reserved = false;
        settleLater(requestId, cost, 'settled', estimatedTokens - used);
        Object.assign(event, {
          model_served: outcome.model,
          tokens: outcome.usage,
          cost_usd: cost,
          attempts: outcome.attempts,
          ttft_ms: outcome.ttftMs,
        });
        return await finish({
          httpStatus: 200,
          body: answer(requestId, {
            result: outcome.result,
            usage: outcome.usage,
            cost_usd: cost,
            model: outcome.model,
            price_version: table.version,
            decision_id: event.decision_id,
          }),
        });
      } catch (err) {
        const e = toError(err);
        if (e.code === 'internal') log.error({ err, requestId }, 'egress call failed');
        // The provider answered with an error or not at all: nothing to charge.
        if (reserved) settleLater(requestId, 0, 'released', estimatedTokens);
        event.cost_usd = 0;
        return finish(refusal(requestId, e, event.decision_id), e);
      }
    },
    async settled() {
      while (settling.size > 0) await Promise.all([...settling]);
    },
    startReaper(intervalMs) {
      let running = false;
      const timer = setInterval(() => {
        if (running) return;
        running = true;
        deps.ledger
          .reap()
          .then((n) => n > 0 && log.warn({ lapsed: n }, 'unsettled reservations lapsed and were charged in full'))
          .catch((err: unknown) => log.warn({ err: String((err as Error)?.message ?? err) }, 'reservation reaper failed'))
          .finally(() => (running = false));
      }, intervalMs);
      timer.unref();
      return { stop: () => clearInterval(timer) };
    },
  };
}
