import { GatewayError, isErrorCode } from '../errors/index.js';
import { errorMessage } from '../lib/error-message.js';
import {
  createReplayCache,
  FORWARD_MAC_PREFIX,
  type ForwardMacKeys,
  verifyForwardMac,
  verifyForwardToken,
} from '../final-gate/forward-token.js';
import { isUuid } from '../lib/ids.js';
import { type KeyStore, localKeySet } from '../keys/index.js';
import type { Logger } from '../logging/index.js';
import type { EgressMetrics } from './metrics.js';
import { ENTRYPOINTS } from '../policy/index.js';
import { parseJsonBody } from '../server/json-body.js';
import type { CredentialStore } from '../vault/index.js';
import { admissionPlan, estimatedTokens, limitsOf, refusalError } from './admission.js';
import { answerOf, denial, refusal, toError } from './answer.js';
import { type AuditEvent, auditEvent } from './audit.js';
import { type BlockAdmission, type BlockOptions, createBlockAdmission } from './blocks.js';
import type { Ledger } from './ledger.js';
import { type ModelPrice, priceOf, type PriceTable, priceTableFrom, type Usage, worstCaseCost } from './pricing.js';
import { callPriced, type ProviderCallLimits, type ProviderUrls, relayPriced } from './provider-call.js';
import type { ProviderRelay, RelayOutcome } from './relay.js';
import { adapterFor } from './providers/registry.js';
import type { PreparedRequest, ProviderAdapter } from './providers/types.js';
import { createSettlements, type Settlements } from './settlement.js';
import { type ApiCallAnswer, type ApiCallInput, type ApiCallReply, EGRESS_AUDIENCE, type GateDeps } from './types.js';

/** The final gate: API Egress on its own port. */
export interface EgressService {
  /**
   * Takes one forwarded call: verifies, decides again, reserves, injects the credential, calls,
   * settles, audits. A body that asks for a relay (`"relay": true`) has its answer written to
   * the relay `relay()` makes, as the provider sends it.
   */
  handle(token: string | undefined, rawBody: Buffer, relay?: () => ProviderRelay): Promise<ApiCallReply>;
  /**
   * Takes one call from the first gate in this process: no token, no bytes, the decided input
   * and the parsed call by reference. Everything after the token is the same as `handle`.
   */
  handOff(call: HandedOff): Promise<ApiCallReply>;
  /** Charges lapsed reservations; runs on a timer. */
  startReaper(intervalMs: number): { stop(): void };
  /** Resolves once every settlement started so far has landed (shutdown, tests). */
  settled(): Promise<void>;
}

/** What the egress role is built from. */
export type EgressServiceDeps = GateDeps & {
  ledger: Ledger;
  credentials: CredentialStore;
  /** The gateway's signing keys: JWT forward tokens verify against their public halves. */
  keys: KeyStore;
  /** MAC forward tokens (what the first gate sends over the HTTP hop) verify with these. */
  macKeys: ForwardMacKeys;
  issuer: string;
  forwardTokenTtlMs: number;
  providerUrls: ProviderUrls;
  call: ProviderCallLimits;
  reservationTtlMs: number;
  /** Prepaid blocks for calls handed over in this process (blocks.ts); absent or `drawMs` 0: every call admitted alone. */
  blocks?: BlockOptions;
  metrics?: EgressMetrics;
};

/** A call the first gate in this process decided on, handed over as it is. */
export interface HandedOff {
  requestId: string;
  input: ApiCallInput;
  body: { provider: string; operation: string; params: unknown };
  /** Where the provider's answer goes as it arrives (the drop-in model APIs); absent: answered as an api.call result. */
  relay?: ProviderRelay;
}

/** A forwarded call whose token checked out: the input decided on and the body sent with it. */
interface Forwarded {
  requestId: string;
  input: ApiCallInput;
  body: { provider?: unknown; operation?: unknown; params?: unknown };
  /**
   * Handed over in this process: no token, so nothing to replay, and the call may draw from a
   * prepaid block. A call over HTTP is admitted alone, so its id is single-use on every replica.
   */
  local?: boolean;
  relay?: ProviderRelay;
}

/** The call as the final gate will make it, decided on again and priced. */
interface Decided {
  adapter: ProviderAdapter;
  prepared: PreparedRequest;
  table: PriceTable;
  price: ModelPrice;
  /** The worst case reserved, USD. */
  amountUsd: number;
  decision: object;
}

/** What is held for a call while it runs: released on failure, settled on success. */
interface Held {
  reserved: boolean;
  estimatedTokens: number;
}

/** The egress role's audit record of a forwarded call, filled in from the decided input. */
function gateEvent(requestId: string, input: ApiCallInput): AuditEvent {
  return auditEvent(requestId, 'egress', {
    subject_kind: input.subject.kind,
    subject_id: input.subject.id,
    task_id: input.context.task_id,
    job_id: input.context.job_id,
    user_id: input.context.user_id,
    provider: input.resource.provider,
    operation: input.resource.operation,
    model_requested: input.resource.model,
    stream: input.resource.stream,
  });
}

/** The egress role's parts, built once and shared by the steps of every call. */
interface FinalGate {
  deps: EgressServiceDeps;
  log: Logger;
  keySet: ReturnType<typeof localKeySet>;
  replay: ReturnType<typeof createReplayCache>;
  settlements: Settlements;
  blocks?: BlockAdmission;
}

/** The least room any budget of a decided call had, and when the first of their periods ends. */
function roomOf(input: ApiCallInput): { roomUsd: number | null; periodEndsAt: number | null } {
  type View = { remaining_usd: number; resets_at: string | null } | null;
  const budget = input.context.budget as Record<string, View> & { model?: Record<string, View> };
  if (!budget.task) return { roomUsd: null, periodEndsAt: null };
  let roomUsd = Infinity;
  let periodEndsAt = Infinity;
  for (const views of [budget, budget.model ?? {}]) {
    for (const [scope, view] of Object.entries(views)) {
      if (scope === 'model' || !view) continue;
      roomUsd = Math.min(roomUsd, view.remaining_usd);
      if (view.resets_at) periodEndsAt = Math.min(periodEndsAt, Date.parse(view.resets_at));
    }
  }
  return { roomUsd, periodEndsAt: Number.isFinite(periodEndsAt) ? periodEndsAt : null };
}

/** Verifies the forward token (a MAC token, or a gateway JWT) against the exact body and reads the call it carries. */
async function verified(gate: FinalGate, token: string | undefined, rawBody: Buffer, relay?: () => ProviderRelay): Promise<Forwarded> {
  const { deps } = gate;
  const options = { issuer: deps.issuer, audience: EGRESS_AUDIENCE, replay: gate.replay, maxTtlMs: deps.forwardTokenTtlMs + 1000 };
  const forward = token?.startsWith(`${FORWARD_MAC_PREFIX}.`)
    ? verifyForwardMac(token, rawBody, { ...options, macKeys: deps.macKeys })
    : await verifyForwardToken(token, rawBody, { ...options, keys: gate.keySet });
  if (forward.entrypoint !== ENTRYPOINTS.apiCall) throw new GatewayError('forward_token_invalid', 'the forward token is not for api.call');
  // The same door as the control plane's, should a signed body ever get past that one.
  const body = parseJsonBody(rawBody) as {
    request_id?: unknown;
    provider?: unknown;
    operation?: unknown;
    params?: unknown;
    relay?: unknown;
  } | null;
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new GatewayError('bad_request', 'the forwarded body is not a JSON object');
  const input = forward.input as ApiCallInput;
  if (!isUuid(body.request_id)) throw new GatewayError('bad_request', 'request_id is missing');
  if (body.relay !== undefined && (body.relay !== true || !relay)) throw new GatewayError('bad_request', 'this answer cannot be relayed');
  return { requestId: body.request_id, input, body, ...(body.relay === true && relay && { relay: relay() }) };
}

/** Decides again on the forwarded input, checks the body is the call decided on, and prices its worst case. */
async function decideAgain({ deps }: FinalGate, { input, body }: Forwarded, event: AuditEvent): Promise<Decided> {
  if (body.provider !== input.resource.provider || body.operation !== input.resource.operation) {
    throw new GatewayError('forward_body_mismatch', 'the forwarded call is not the one the gateway decided on');
  }
  const { decision, decisionId, revision } = await deps.decisions.decide(
    ENTRYPOINTS.apiCall,
    input,
    `egress:${input.subject.kind}:${input.subject.id}`,
  );
  Object.assign(event, { decision_id: decisionId, revision, reasons: decision.reasons });
  if (!decision.allow) throw denial('denied by the final gate', decision.reasons);
  const adapter = adapterFor(input.resource.provider, input.resource.operation);
  const prepared = adapter.prepare(input.resource.operation, body.params);
  if (prepared.model !== input.resource.model || prepared.stream !== input.resource.stream) {
    throw new GatewayError('forward_body_mismatch', 'the forwarded parameters are not the ones the gateway decided on');
  }
  const table = priceTableFrom(deps.policy.bundleData()?.data);
  const price = priceOf(table, input.resource.provider, prepared.model);
  const amountUsd = worstCaseCost(prepared.inputChars, prepared.maxOutputTokens, price);
  Object.assign(event, { price_version: table.version, reserved_usd: amountUsd });
  return { adapter, prepared, table, price, amountUsd, decision };
}

/** Picks the credential and reserves the worst case and the rate limits, all or nothing; resolves with the credential's secret. */
async function admit(gate: FinalGate, { requestId, input, local }: Forwarded, d: Decided, event: AuditEvent, held: Held): Promise<string> {
  const { deps } = gate;
  const ctx = input.context;
  const credential = await deps.credentials.revealFor(input.resource.provider, { user: ctx.user_id, group: ctx.group_id });
  event.credential_id = credential.info.id;
  held.estimatedTokens = estimatedTokens(d.prepared.inputChars, d.prepared.maxOutputTokens);
  const who = {
    subject: input.subject,
    taskId: ctx.task_id,
    userId: ctx.user_id,
    groupId: ctx.group_id,
    projectId: ctx.project_id,
    credentialId: credential.info.id,
    model: d.prepared.model,
  };
  const plan = admissionPlan(who, limitsOf(d.decision), held.estimatedTokens);
  const expiresAt = new Date(deps.ledger.now() + deps.reservationTtlMs);
  const refused =
    local && gate.blocks
      ? await gate.blocks.admit({
          callId: requestId,
          holds: plan.holds,
          amountUsd: d.amountUsd,
          takes: plan.takes,
          expiresAt,
          ...roomOf(input),
        })
      : await deps.ledger.admit(requestId, plan.holds, d.amountUsd, plan.takes, expiresAt);
  const err = refusalError(refused, d.amountUsd);
  if (err) throw err;
  held.reserved = true;
  return credential.secret;
}

/** A provider call that has answered: its settlement follows, and the audit records what it cost. */
function settleCalled(
  gate: FinalGate,
  f: Forwarded,
  held: Held,
  event: AuditEvent,
  o: { model: string; usage: Usage; costUsd: number; usedTokens: number; attempts: number; ttftMs: number },
): void {
  held.reserved = false;
  gate.settlements.later(f.requestId, o.costUsd, 'settled', held.estimatedTokens - o.usedTokens);
  Object.assign(event, { model_served: o.model, tokens: o.usage, cost_usd: o.costUsd, attempts: o.attempts, ttft_ms: o.ttftMs });
}

/** Calls the provider for an admitted call and builds the answer; settlement follows it. */
async function call(gate: FinalGate, f: Forwarded, d: Decided, secret: string, event: AuditEvent, held: Held): Promise<ApiCallReply> {
  if (f.relay) return relayed(gate, f, f.relay, d, secret, event, held);
  const { provider, operation } = f.input.resource;
  const { outcome, costUsd, usedTokens } = await callPriced(gate.deps, {
    provider,
    operation,
    adapter: d.adapter,
    prepared: d.prepared,
    secret,
    price: d.price,
  });
  if (costUsd > d.amountUsd)
    gate.log.warn({ requestId: f.requestId, cost: costUsd, amount: d.amountUsd }, 'a provider billed more than the worst case reserved');
  settleCalled(gate, f, held, event, { ...outcome, costUsd, usedTokens });
  const body = answerOf(f.requestId, {
    result: outcome.result,
    usage: outcome.usage,
    cost_usd: costUsd,
    model: outcome.model,
    price_version: d.table.version,
    decision_id: event.decision_id,
  });
  return { httpStatus: 200, body };
}

/**
 * Calls the provider for an admitted call and relays its answer as it arrives. Once the answer
 * has begun it is charged whatever happens to it: in full when it completes, else for the
 * input and the output delivered (the adapter's upper bound). The reply is for the audit and
 * the metrics: the caller has had the provider's answer.
 */
async function relayed(
  gate: FinalGate,
  f: Forwarded,
  relay: ProviderRelay,
  d: Decided,
  secret: string,
  event: AuditEvent,
  held: Held,
): Promise<ApiCallReply> {
  const { provider, operation } = f.input.resource;
  const { outcome, costUsd, usedTokens } = await relayPriced(
    gate.deps,
    { provider, operation, adapter: d.adapter, prepared: d.prepared, secret, price: d.price },
    relay,
  );
  settleCalled(gate, f, held, event, { ...outcome, costUsd, usedTokens });
  const error = relayError(outcome);
  const body = answerOf(f.requestId, {
    status: error ? 'error' : 'ok',
    error,
    usage: outcome.usage,
    cost_usd: costUsd,
    model: outcome.model,
    price_version: d.table.version,
    decision_id: event.decision_id,
  });
  return { httpStatus: 200, body };
}

/** Why a relayed answer did not complete, as the audit records it. */
function relayError(outcome: RelayOutcome): ApiCallAnswer['error'] {
  if (outcome.ending === 'complete') return null;
  if (outcome.ending === 'aborted') return { code: 'client_closed', message: 'the caller left before the answer ended' };
  const code = outcome.failure?.code ?? 'provider_error';
  return { code: isErrorCode(code) ? code : 'provider_error', message: outcome.failure?.message ?? 'the answer broke off' };
}

/** Everything the final gate does once it knows the call it was handed: decides again, admits, calls, settles, audits. */
async function finalGate(gate: FinalGate, forwarded: Forwarded, started: number): Promise<ApiCallReply> {
  const { deps, log } = gate;
  const { requestId } = forwarded;
  const event = gateEvent(requestId, forwarded.input);
  const finish = async (reply: ApiCallReply, err?: GatewayError): Promise<ApiCallReply> => {
    event.outcome = reply.body.status;
    deps.metrics?.egressCalls.inc({
      provider: event.provider ?? '',
      operation: event.operation ?? '',
      outcome: event.outcome,
      code: err?.code ?? '',
    });
    if (err) event.error_code = err.code;
    else if (reply.body.error) event.error_code = reply.body.error.code;
    if (reply.body.error?.reasons) event.reasons = reply.body.error.reasons;
    event.latency_ms = performance.now() - started;
    await deps.audit.record(event);
    return reply;
  };
  const held: Held = { reserved: false, estimatedTokens: 0 };
  try {
    const decided = await decideAgain(gate, forwarded, event);
    const secret = await admit(gate, forwarded, decided, event, held);
    return await finish(await call(gate, forwarded, decided, secret, event, held));
  } catch (err) {
    const e = toError(err);
    if (e.code === 'internal') log.error({ err, requestId }, 'egress call failed');
    // The provider answered with an error or not at all: nothing to charge.
    if (held.reserved) gate.settlements.later(requestId, 0, 'released', held.estimatedTokens);
    event.cost_usd = 0;
    return finish(refusal(requestId, e, event.decision_id), e);
  }
}

/**
 * API Egress: trusts nothing but a forward token bound to the exact body (or a hand-off from the
 * first gate in its own process, where no network lies between them), decides again on the
 * input it carries, picks the credential, admits the call against budgets and rate limits,
 * calls the provider, and settles after answering. Every forwarded call is audited here.
 */
export function createEgressService(deps: EgressServiceDeps): EgressService {
  const log = deps.logger.child({ component: 'egress' });
  const blocks =
    deps.blocks && deps.blocks.drawMs > 0
      ? createBlockAdmission(deps.ledger, {
          ...deps.blocks,
          onSettleError: (blockId, err) =>
            log.error({ blockId, err: errorMessage(err) }, 'settling a prepaid block failed; it will be charged in full when it lapses'),
        })
      : undefined;
  const gate: FinalGate = {
    deps,
    log,
    keySet: localKeySet(deps.keys),
    replay: createReplayCache(),
    settlements: createSettlements(deps.ledger, log, blocks),
    ...(blocks && { blocks }),
  };
  return {
    handle: async (token, rawBody, relay) => {
      const started = performance.now();
      return finalGate(gate, await verified(gate, token, rawBody, relay), started);
    },
    handOff: (call) => finalGate(gate, { ...call, local: true }, performance.now()),
    settled: async () => {
      await gate.settlements.settled();
      await blocks?.flush();
    },
    startReaper: (intervalMs) => gate.settlements.startReaper(intervalMs),
  };
}
