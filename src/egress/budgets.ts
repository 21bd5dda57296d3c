/**
 * Budgets as data: their scopes, periods and how a stored row reads in USD for the period
 * around now. The period arithmetic itself lives in PostgreSQL (`cynode_budget_period`), so
 * admission, settlement and these reads agree on one clock and one calendar.
 */
import { GatewayError } from '../errors/index.js';
import { isTaskId } from '../lib/ids.js';

/** The scopes a budget can be set for. */
export const BUDGET_SCOPES = ['task', 'user', 'group', 'project', 'subject'] as const;
export type BudgetScope = (typeof BUDGET_SCOPES)[number];

/** How long a budget's period is; `total` never resets (a lifetime budget). */
export const BUDGET_PERIODS = ['day', 'week', 'month', 'total'] as const;
export type BudgetPeriod = (typeof BUDGET_PERIODS)[number];

/** `calendar`: UTC days, ISO weeks (from Monday), calendar months. `rolling`: the same lengths counted from when the period was set. */
export const BUDGET_RESETS = ['calendar', 'rolling'] as const;
export type BudgetReset = (typeof BUDGET_RESETS)[number];

/** What an admin sets beside the limit; every field has the default of a lifetime budget. */
export interface BudgetOptions {
  period?: BudgetPeriod;
  reset?: BudgetReset;
  softLimitUsd?: number | null;
  /** A budget for calls to this model only; absent: every model. */
  model?: string | null;
}

/** A budget as the admin API and the policy input show it, in USD, for the period around now. */
export interface Budget {
  scope: BudgetScope;
  id: string;
  /** The model this budget is for; null: every model. */
  model: string | null;
  limit_usd: number;
  soft_limit_usd: number | null;
  period: BudgetPeriod;
  reset: BudgetReset;
  /** What the current period has spent and holds for calls in flight. */
  spent_usd: number;
  reserved_usd: number;
  remaining_usd: number;
  /** When the current period began and when it ends; null for a `total` budget. */
  period_start: string | null;
  resets_at: string | null;
  updated_by: string;
  updated_at: string;
}

/** A row of `budgets` with its current period (`current_start`, `resets_at`), as the database or row_to_json gives it. */
export interface BudgetRow {
  scope: BudgetScope;
  subject_id: string;
  model: string;
  limit_micros: string | number;
  soft_limit_micros: string | number | null;
  spent_micros: string | number;
  reserved_micros: string | number;
  period: BudgetPeriod;
  reset: BudgetReset;
  period_start: Date | string;
  current_start: Date | string;
  resets_at: Date | string | null;
  updated_by: string;
  updated_at: Date | string;
}

/** USD as the micro-dollars the database counts in. */
export const micros = (usd: number): number => Math.round(usd * 1e6);
/** Micro-dollars as USD. */
export const usd = (m: string | number): number => Number(m) / 1e6;
const iso = (t: Date | string) => new Date(t).toISOString();

/**
 * A stored budget in USD, with what is left of it in the current period. Counters still on a
 * period that has ended (no call has rolled them yet) read as a fresh period: what they hold
 * stays charged to the period it was reserved in.
 */
export function budgetFromRow(r: BudgetRow): Budget {
  const fresh = new Date(r.period_start).getTime() < new Date(r.current_start).getTime();
  const limit = Number(r.limit_micros);
  const spent = fresh ? 0 : Number(r.spent_micros);
  const reserved = fresh ? 0 : Number(r.reserved_micros);
  return {
    scope: r.scope,
    id: r.subject_id,
    model: r.model === '' ? null : r.model,
    limit_usd: usd(limit),
    soft_limit_usd: r.soft_limit_micros === null ? null : usd(r.soft_limit_micros),
    period: r.period,
    reset: r.reset,
    spent_usd: usd(spent),
    reserved_usd: usd(reserved),
    remaining_usd: usd(Math.max(0, limit - spent - reserved)),
    period_start: r.period === 'total' ? null : iso(r.current_start),
    resets_at: r.resets_at === null ? null : iso(r.resets_at),
    updated_by: r.updated_by,
    updated_at: iso(r.updated_at),
  };
}

/** Budgets with their current period at the time bound to `?`; alias `b`, to be filtered by the caller. */
export const BUDGETS_NOW = `
  SELECT bu.*, p.period_start AS current_start, p.resets_at
  FROM budgets bu CROSS JOIN LATERAL cynode_budget_period(bu.period, bu.reset, bu.anchor_at, ?::timestamptz) p`;

const MODEL = /^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$/;

/** Refuses a scope, id or model the budgets table cannot hold. */
export function checkBudgetKey(scope: string, id: string, model?: string | null): BudgetScope {
  if (!(BUDGET_SCOPES as readonly string[]).includes(scope))
    throw new GatewayError('budget_invalid', `scope must be one of ${BUDGET_SCOPES.join(', ')}`);
  // Every budget id (a task's, a user's, a group's, a project's or a subject's) has the shape of a task id.
  if (!isTaskId(id)) throw new GatewayError('budget_invalid', 'the budget id must be 1-256 letters, digits or _.:@/-');
  if (model !== undefined && model !== null && !MODEL.test(model))
    throw new GatewayError('budget_invalid', 'model must be a model name (1-128 letters, digits or _.:/@-)');
  return scope as BudgetScope;
}

const LIMIT_USD_MAX = 1_000_000_000;
const isUsd = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= LIMIT_USD_MAX;

/** Reads the body of `PUT /v1/budgets/{scope}/{id}`: the limit and the options, each checked. */
export function parseBudgetBody(body: Record<string, unknown>, queryModel: string | undefined): { limitUsd: number } & BudgetOptions {
  const { limit_usd: limit, soft_limit_usd: soft, period, reset } = body;
  if (!isUsd(limit)) throw new GatewayError('budget_invalid', `limit_usd must be a number from 0 to ${LIMIT_USD_MAX}`);
  if (soft !== undefined && soft !== null && !isUsd(soft))
    throw new GatewayError('budget_invalid', `soft_limit_usd must be a number from 0 to ${LIMIT_USD_MAX}, or null`);
  if (period !== undefined && !(BUDGET_PERIODS as readonly unknown[]).includes(period))
    throw new GatewayError('budget_invalid', `period must be one of ${BUDGET_PERIODS.join(', ')}`);
  if (reset !== undefined && !(BUDGET_RESETS as readonly unknown[]).includes(reset))
    throw new GatewayError('budget_invalid', `reset must be one of ${BUDGET_RESETS.join(', ')}`);
  const model = body.model ?? queryModel ?? null;
  if (body.model !== undefined && queryModel !== undefined && body.model !== queryModel)
    throw new GatewayError('budget_invalid', 'the model in the body and in the query differ');
  if (model !== null && typeof model !== 'string') throw new GatewayError('budget_invalid', 'model must be a model name');
  return {
    limitUsd: limit,
    softLimitUsd: (soft as number | null | undefined) ?? null,
    period: (period as BudgetPeriod | undefined) ?? 'total',
    reset: (reset as BudgetReset | undefined) ?? 'calendar',
    model,
  };
}
