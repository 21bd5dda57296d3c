/**
 * Admission, as data: what the final gate asks the ledger to hold and take for one call, and
 * what a ledger refusal answers. No database and no I/O here, so every rule is testable alone.
 */
import { GatewayError } from '../errors/index.js';
import type { BudgetScope } from './budgets.js';
import type { Hold, RateTake, Refusal } from './ledger.js';

/** The rate limits a decision may carry (`limits` beside `allow`), per subject and per credential. */
export interface Limits {
  subject?: { rpm?: number; tpm?: number };
  credential?: { rpm?: number; tpm?: number };
}

/** The decision's limits, or none. */
export function limitsOf(decision: object): Limits {
  return ((decision as { limits?: Limits }).limits ?? {}) as Limits;
}

/**
 * Tokens a call may use: the input bounded by its characters' quarter (the usual ratio;
 * settlement refunds what it did not use) plus the output cap.
 */
export function estimatedTokens(inputChars: number, maxOutputTokens: number): number {
  return Math.ceil(inputChars / 4) + maxOutputTokens;
}

/** Who a call is admitted for. */
export interface AdmissionSubject {
  subject: { kind: string; id: string };
  taskId: string;
  userId: string | null;
  groupId?: string | null;
  projectId?: string | null;
  credentialId: string;
  /** The model called: each scope's budget for it is held too. */
  model?: string;
}

/** What the ledger is asked for: budgets to hold the worst case against, rate limits to take from. */
export interface AdmissionPlan {
  holds: Hold[];
  takes: RateTake[];
}

/**
 * The holds and takes of one call. The task's budget is required; the user's, group's,
 * project's and subject's apply when set, and so do each scope's budgets for the model
 * called. A limit the decision does not give (or gives as no finite number) is not taken from.
 */
export function admissionPlan(who: AdmissionSubject, limits: Limits, tokens: number): AdmissionPlan {
  const takes: RateTake[] = [];
  const take = (key: string, limit: number | undefined, amount: number, isTokens: boolean) => {
    if (typeof limit === 'number' && Number.isFinite(limit)) takes.push({ key, limit, amount, tokens: isTokens });
  };
  const subject = `${who.subject.kind}:${who.subject.id}`;
  take(`rpm:subject:${subject}`, limits.subject?.rpm, 1, false);
  take(`tpm:subject:${subject}`, limits.subject?.tpm, tokens, true);
  take(`rpm:credential:${who.credentialId}`, limits.credential?.rpm, 1, false);
  take(`tpm:credential:${who.credentialId}`, limits.credential?.tpm, tokens, true);
  const scopes: [BudgetScope, string | null][] = [
    ['task', who.taskId],
    ['user', who.userId],
    ['group', who.groupId ?? null],
    ['project', who.projectId ?? null],
    ['subject', who.subject.id],
  ];
  const held = scopes.filter((s): s is [BudgetScope, string] => Boolean(s[1]));
  const holds: Hold[] = held.map(([scope, id]) => ({ scope, subject_id: id, required: scope === 'task' }));
  const { model } = who;
  if (model) holds.push(...held.map(([scope, id]) => ({ scope, subject_id: id, model, required: false })));
  return { holds, takes };
}

/** A ledger refusal as the error the call is answered with; undefined when the call was admitted. */
export function refusalError(refused: Refusal | undefined, amountUsd: number): GatewayError | undefined {
  switch (refused?.reason) {
    case undefined:
      return undefined;
    case 'rate_limited':
      return new GatewayError('rate_limited', `rate limit ${refused.key.replace(/:[^:]*$/, '')} reached for this window`, {
        reasons: ['rate_limited'],
        retry_after_s: Math.ceil(refused.retryAfterMs / 1000),
      });
    case 'budget_exceeded':
      return new GatewayError('budget_exceeded', `the ${refused.scope} budget cannot cover this call's worst case of $${amountUsd}`, {
        reasons: ['budget_exceeded'],
        remaining_usd: refused.remainingUsd,
      });
    case 'budget_missing':
      return new GatewayError('budget_missing', `the ${refused.scope} has no budget`, { reasons: ['budget_missing'] });
    case 'replayed':
      return new GatewayError('forward_token_replayed', 'this call was already made');
  }
}
