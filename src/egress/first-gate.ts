import { randomUUID } from 'node:crypto';
import { GatewayError } from '../errors/index.js';
import { type ForwardMacKeys, signForwardMac } from '../final-gate/forward-token.js';
import type { EgressMetrics } from './metrics.js';
import { ENTRYPOINTS } from '../policy/index.js';
import type { PreferencesService } from '../preferences/index.js';
import { denial, refusal, toError } from './answer.js';
import { type AuditEvent, auditEvent } from './audit.js';
import type { EgressService } from './final-gate.js';
import type { ProviderRelay } from './relay.js';
import { createEgressForwarder, type EgressForwarder } from './forward.js';
import {
  type ContextReader,
  type ContextReuse,
  createContextReader,
  loadCallContext,
  parseApiCall,
  type ParsedCall,
  policyInput,
  subjectOf,
} from './input.js';
import type { Ledger } from './ledger.js';
import { type ModelPrice, priceOf, type PriceTable, priceTableFrom, worstCaseCost } from './pricing.js';
import { adapterFor, PROVIDERS } from './providers/registry.js';
import { type ApiCaller, type ApiCallInput, type ApiCallReply, EGRESS_AUDIENCE, type GateDeps } from './types.js';

/** The first gate: `POST /v1/api/call` on the control plane. */
export interface ApiCallGateway {
  /**
   * Decides on one call and hands it to API Egress. With `relay`, the provider's answer is
   * written there as it arrives (the drop-in model APIs) and the reply only reports the outcome;
   * a refusal before the answer began is the reply, and nothing has been written.
   */
  call(caller: ApiCaller, raw: unknown, relay?: ProviderRelay): Promise<ApiCallReply>;
  /**
   * The models of `provider` the `api.call` policy lets this caller use for the job named: each
   * priced model is decided on for each operation of the provider (stream off, no cost), each
   * decision recorded, until one allows it. What is listed is not a permission: every call is decided on its own.
   */
  allowedModels(caller: ApiCaller, job: { task_id: string; job_id: string | null }, provider: string): Promise<string[]>;
  /** A lease ended (of `nodeId`, or any): call contexts read before it are read again. */
  leaseEnded(nodeId?: string): void;
  close(): void;
}

/** What the first gate is built from. */
export type ApiCallGatewayDeps = GateDeps & {
  preferences: PreferencesService;
  ledger: Ledger;
  /** What the forward token of the HTTP hop is signed with (both ends hold the vault's master keys). */
  macKeys: ForwardMacKeys;
  issuer: string;
  forwardTokenTtlMs: number;
  /** API Egress's base URL (read per call: it is known only once the roles listen). */
  egressUrl: () => string;
  region: string;
  requestTimeoutMs: number;
  /** When a call's context may answer the calls after it; absent: every call reads it. */
  contextReuse?: ContextReuse;
  metrics?: EgressMetrics;
  /**
   * The egress role when it runs in this process: the decided call is handed over by
   * reference (no token, no bytes), to the same final gate, which decides again and audits.
   */
  local?: EgressService;
};

const pricedOrUndefined = (table: PriceTable, provider: string, model: string): ModelPrice | undefined => {
  try {
    return priceOf(table, provider, model);
  } catch {
    return undefined;
  }
};

/** A call the policy has decided on, with what signing and forwarding it need. */
interface Decided {
  req: ParsedCall;
  input: ApiCallInput;
  allow: boolean;
  reasons: string[];
  decisionId: string;
  revision: string;
  priced: boolean;
  table: PriceTable;
}

// Parse, load the context, price the worst case and decide, filling the audit record in as it goes.
async function decide(
  deps: ApiCallGatewayDeps & { contexts: ContextReader },
  caller: ApiCaller,
  raw: unknown,
  subject: ApiCallInput['subject'],
  event: AuditEvent,
): Promise<Decided> {
  const req = parseApiCall(raw);
  Object.assign(event, { task_id: req.task_id, job_id: req.job_id, provider: req.provider, operation: req.operation });
  const prepared = adapterFor(req.provider, req.operation).prepare(req.operation, req.params);
  Object.assign(event, { model_requested: prepared.model, stream: prepared.stream });
  const context = await loadCallContext(deps, caller, req, subject.id, prepared.model);
  event.user_id = context.job?.user_id ?? null;
  const table = priceTableFrom(deps.policy.bundleData()?.data);
  event.price_version = table.version;
  // An unpriced model is the policy's to refuse first (its catalogue should list priced
  // models only); if the policy allows it anyway, the call still cannot be reserved.
  const price = pricedOrUndefined(table, req.provider, prepared.model);
  const estimate = price ? worstCaseCost(prepared.inputChars, prepared.maxOutputTokens, price) : 0;
  event.reserved_usd = estimate;
  const input = policyInput(deps, { caller, subject, req, prepared, estimatedCostUsd: estimate, context });
  const { decision, decisionId, revision } = await deps.decisions.decide(ENTRYPOINTS.apiCall, input, `${caller.kind}:${subject.id}`);
  Object.assign(event, { decision_id: decisionId, revision, reasons: decision.reasons });
  return { req, input, allow: decision.allow, reasons: decision.reasons, decisionId, revision, priced: price !== undefined, table };
}

// Hands the decided call to the egress role: by reference when it runs in this process (no
// network, so nothing to sign), else under a MAC forward token bound to the exact body it sends.
async function forward(
  deps: ApiCallGatewayDeps,
  forwarder: EgressForwarder,
  requestId: string,
  caller: ApiCaller,
  d: Decided,
  relay: ProviderRelay | undefined,
): Promise<ApiCallReply> {
  const { req } = d;
  if (!d.priced) priceOf(d.table, req.provider, d.input.resource.model);
  // The egress role audits what happens from here, allowed or not.
  if (deps.local) {
    return deps.local.handOff({
      requestId,
      input: d.input,
      body: { provider: req.provider, operation: req.operation, params: req.params },
      ...(relay && { relay }),
    });
  }
  const body = JSON.stringify({
    request_id: requestId,
    provider: req.provider,
    operation: req.operation,
    params: req.params,
    ...(relay && { relay: true }),
  });
  const token = signForwardMac(
    deps.macKeys,
    {
      issuer: deps.issuer,
      audience: EGRESS_AUDIENCE,
      subject: `${caller.kind}:${d.input.subject.id}`,
      entrypoint: ENTRYPOINTS.apiCall,
      input: d.input,
      revision: d.revision,
    },
    body,
    deps.forwardTokenTtlMs,
  );
  if (!relay) return forwarder.send(body, token);
  const adapter = adapterFor(req.provider, req.operation);
  const broken = { code: 'egress_unavailable', message: 'API Egress broke off mid-answer' };
  return forwarder.relay(requestId, body, token, relay, () => adapter.streamError(req.operation, broken));
}

/** See {@link ApiCallGateway.allowedModels}. */
async function allowedModels(
  deps: ApiCallGatewayDeps & { contexts: ContextReader },
  caller: ApiCaller,
  job: { task_id: string; job_id: string | null },
  provider: string,
): Promise<string[]> {
  const adapter = Object.hasOwn(PROVIDERS, provider) ? PROVIDERS[provider] : undefined;
  if (!adapter) throw new GatewayError('bad_request', `unknown provider '${provider.slice(0, 64)}'`);
  const subject = subjectOf(caller);
  const table = priceTableFrom(deps.policy.bundleData()?.data);
  const models = Object.keys(table.models)
    .filter((m) => table.models[m]?.provider === provider)
    .sort();
  const allowed: string[] = [];
  for (const model of models) {
    const base = { provider, params: null, task_id: job.task_id, job_id: job.job_id };
    const context = await loadCallContext(deps, caller, { ...base, operation: adapter.operations[0] ?? '' }, subject.id, model);
    for (const operation of adapter.operations) {
      const prepared = { path: '', body: {}, stream: false, model, inputChars: 0, maxOutputTokens: 0 };
      const input = policyInput(deps, { caller, subject, req: { ...base, operation }, prepared, estimatedCostUsd: 0, context });
      const { decision } = await deps.decisions.decide(ENTRYPOINTS.apiCall, input, `${caller.kind}:${subject.id}`);
      if (decision.allow) {
        allowed.push(model);
        break;
      }
    }
  }
  return allowed;
}

/**
 * Builds the policy input from server state (the worker's stored report, the job it leases,
 * the task's budgets, the user's effective preferences), asks the `api.call` policy, audits
 * a denial, and forwards an allowed call to API Egress with a forward token bound to the
 * body. Nothing the caller says about its task, user, budget or region is believed.
 */
export function createApiCallGateway(deps: ApiCallGatewayDeps): ApiCallGateway {
  const forwarder = createEgressForwarder({ egressUrl: deps.egressUrl, requestTimeoutMs: deps.requestTimeoutMs });
  const contexts = createContextReader(deps.knex, deps.ledger.now, deps.contextReuse);
  const withContexts = { ...deps, contexts };

  return {
    async call(caller, raw, relay) {
      const requestId = randomUUID();
      const started = performance.now();
      const subject = subjectOf(caller);
      const event = auditEvent(requestId, 'gateway', { subject_kind: caller.kind, subject_id: subject.id });
      // A provider name from the request is a label only once the registry knows it.
      const count = (outcome: string, code: string) =>
        deps.metrics?.apiCalls.inc({
          caller: caller.kind,
          provider: event.provider && Object.hasOwn(PROVIDERS, event.provider) ? event.provider : 'unknown',
          outcome,
          code,
        });
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
        const decided = await decide(withContexts, caller, raw, subject, event);
        if (!decided.allow) return await refuse(denial('api.call denied', decided.reasons));
        const reply = await forward(deps, forwarder, requestId, caller, decided, relay);
        reply.body.decision_id ??= decided.decisionId;
        count(reply.body.status, reply.body.error?.code ?? '');
        return reply;
      } catch (err) {
        const e = toError(err);
        if (e.code === 'internal') deps.logger.error({ err, requestId }, 'api.call failed');
        return refuse(e);
      }
    },
    allowedModels: (caller, job, provider) => allowedModels(withContexts, caller, job, provider),
    leaseEnded: (nodeId) => contexts.leaseEnded(nodeId),
    close: () => forwarder.close(),
  };
}
