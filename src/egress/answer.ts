import { GatewayError, isGatewayError, type ErrorCode } from '../errors/index.js';
import type { ApiCallAnswer, ApiCallReply } from './types.js';

/** An answer for `requestId`: an empty success unless `over` says otherwise. */
export const answerOf = (requestId: string, over: Partial<ApiCallAnswer>): ApiCallAnswer => ({
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

/**
 * A refusal as an api.call answer: the error code's status, its reasons, Retry-After when
 * given. 402, 403 and 429 are denials (the caller may not, or not now); anything else is an error.
 */
export function refusal(requestId: string, err: GatewayError, decisionId: string | null): ApiCallReply {
  const details = { ...(err.details ?? {}) } as Record<string, unknown>;
  const reasons = Array.isArray(details.reasons) ? (details.reasons as string[]) : undefined;
  delete details.reasons;
  const retry = typeof details.retry_after_s === 'number' ? details.retry_after_s : undefined;
  const denied = err.status === 402 || err.status === 403 || err.status === 429;
  return {
    httpStatus: err.status,
    ...(retry !== undefined && { retryAfterS: retry }),
    body: answerOf(requestId, {
      status: denied ? 'denied' : 'error',
      error: { code: err.code, message: err.message, ...(reasons && { reasons }), ...(Object.keys(details).length > 0 && { details }) },
      decision_id: decisionId,
    }),
  };
}

/** The most precise code for a policy denial: budgets have their own. */
function denialCode(reasons: string[]): ErrorCode {
  if (reasons.includes('budget_exceeded')) return 'budget_exceeded';
  if (reasons.includes('budget_missing')) return 'budget_missing';
  return 'policy_denied';
}

/** A policy denial as the error a gate answers with; `prefix` names the gate. */
export function denial(prefix: string, reasons: string[]): GatewayError {
  return new GatewayError(denialCode(reasons), `${prefix}: ${reasons.join(', ') || 'no rule allowed it'}`, { reasons });
}

/** A thrown value as a GatewayError: anything unexpected becomes a bare `internal`. */
export const toError = (err: unknown): GatewayError => (isGatewayError(err) ? err : new GatewayError('internal', 'internal error'));
