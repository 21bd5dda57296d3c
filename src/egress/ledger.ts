import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { isTaskId } from '../lib/ids.js';
import { pruneFinishedReservations } from '../audit/retention.js';

/** The scopes a budget can be set for. */
export const BUDGET_SCOPES = ['task', 'user', 'subject'] as const;
export type BudgetScope = (typeof BUDGET_SCOPES)[number];

/** A budget as the admin API and the policy input show it, in USD. */
export interface Budget {
  scope: BudgetScope;
  id: string;
  limit_usd: number;
  spent_usd: number;
  reserved_usd: number;
  remaining_usd: number;
  updated_by: string;
  updated_at: string;
}

/** A budget a call's reservation is held against; a missing `required` budget refuses the call. */
export interface Hold {
  scope: BudgetScope;
  subject_id: string;
  required: boolean;
}

/** One rate limit to take from: `amount` units of `limit` in the window around now. */
export interface RateTake {
  key: string;
  limit: number;
  amount: number;
  /** Token counters are refunded at settlement by what the estimate took beyond the real count. */
  tokens: boolean;
}

/** Why admission said no. */
export type Refusal =
  | { reason: 'rate_limited'; key: string; retryAfterMs: number }
  | { reason: 'budget_exceeded'; scope: string; remainingUsd: number }
  | { reason: 'budget_missing'; scope: string }
  | { reason: 'replayed' };

/**
 * The money and the counters, in PostgreSQL so every replica shares them. `admit` takes the
 * rate limits and reserves the worst-case cost against every budget in one statement, all
 * or nothing; `settle` charges the real cost and releases the rest. A reservation nobody
 * settles (a replica killed mid-call) expires and is charged in full: spend is never
 * under-counted, so a budget is never overspent.
 */
export interface Ledger {
  getBudget(scope: BudgetScope, id: string): Promise<Budget | undefined>;
  setBudget(scope: BudgetScope, id: string, limitUsd: number, by: string): Promise<Budget>;
  /** Creates a budget only if none exists (a job's budget becomes its task's on first use). */
  ensureBudget(scope: BudgetScope, id: string, limitUsd: number, by: string): Promise<void>;
  listBudgets(scope?: BudgetScope): Promise<Budget[]>;
  admit(callId: string, holds: Hold[], amountUsd: number, takes: RateTake[], expiresAt: Date): Promise<Refusal | undefined>;
  /** Charges `costUsd` and releases the rest; false when the reservation was already settled. */
  settle(callId: string, costUsd: number, state: 'settled' | 'released', tokenRefund: number): Promise<boolean>;
  /** Charges lapsed reservations in full and drops old rate windows; returns how many lapsed. */
  reap(): Promise<number>;
}

/** The fixed window of RPM/TPM counters. */
export const RATE_WINDOW_MS = 60_000;

const micros = (usd: number) => Math.round(usd * 1e6);
const usd = (m: string | number) => Number(m) / 1e6;

/** A row of `budgets` as the database (or row_to_json) gives it. */
export interface BudgetRow {
  scope: BudgetScope;
  subject_id: string;
  limit_micros: string | number;
  spent_micros: string | number;
  reserved_micros: string | number;
  updated_by: string;
  updated_at: Date | string;
}

/** A stored budget in USD, with what is left of it. */
export function budgetFromRow(r: BudgetRow): Budget {
  const limit = Number(r.limit_micros);
  const spent = Number(r.spent_micros);
  const reserved = Number(r.reserved_micros);
  return {
    scope: r.scope,
    id: r.subject_id,
    limit_usd: usd(limit),
    spent_usd: usd(spent),
    reserved_usd: usd(reserved),
    remaining_usd: usd(Math.max(0, limit - spent - reserved)),
    updated_by: r.updated_by,
    updated_at: new Date(r.updated_at).toISOString(),
  };
}

/** Refuses a scope or id the budgets table cannot hold. */
export function checkBudgetKey(scope: string, id: string): BudgetScope {
  if (!(BUDGET_SCOPES as readonly string[]).includes(scope))
    throw new GatewayError('budget_invalid', `scope must be one of ${BUDGET_SCOPES.join(', ')}`);
  // Every budget id (a task's, a user's or a subject's) has the shape of a task id.
  if (!isTaskId(id)) throw new GatewayError('budget_invalid', 'the budget id must be 1-256 letters, digits or _.:@/-');
  return scope as BudgetScope;
}

/**
 * One call to `cynode_egress_admit`: takes every rate counter and reserves `amountUsd` against
 * every hold, all or nothing, in the fixed window around `t`.
 */
async function admit(
  knex: Knex,
  t: number,
  call: { callId: string; holds: Hold[]; amountUsd: number; takes: RateTake[]; expiresAt: Date },
): Promise<Refusal | undefined> {
  const windowStart = Math.floor(t / RATE_WINDOW_MS) * RATE_WINDOW_MS;
  const counters = call.takes.map((k) => ({
    key: k.key,
    window_start: new Date(windowStart).toISOString(),
    window_end: new Date(windowStart + RATE_WINDOW_MS).toISOString(),
    amount: k.amount,
    lim: k.limit,
    tokens: k.tokens,
  }));
  const { rows } = (await knex.raw('SELECT cynode_egress_admit(?, ?::jsonb, ?, ?::jsonb, ?) AS r', [
    call.callId,
    JSON.stringify(call.holds),
    micros(call.amountUsd),
    JSON.stringify(counters),
    call.expiresAt,
  ])) as { rows: { r: Record<string, unknown> }[] };
  const r = rows[0]!.r;
  if (r.ok === true) return undefined;
  switch (r.reason) {
    case 'rate_limited':
      return { reason: 'rate_limited', key: String(r.key), retryAfterMs: Math.max(1000, Date.parse(String(r.retry_at)) - t) };
    case 'budget_exceeded':
      return { reason: 'budget_exceeded', scope: String(r.scope), remainingUsd: usd(Number(r.remaining_micros ?? 0)) };
    case 'budget_missing':
      return { reason: 'budget_missing', scope: String(r.scope) };
    default:
      return { reason: 'replayed' };
  }
}

/** The ledger over `budgets`, `budget_reservations` and `rate_counters`; `now` is the clock tests control. */
export function createLedger(deps: { knex: Knex; now?: () => number }): Ledger {
  const { knex } = deps;
  const now = deps.now ?? Date.now;

  return {
    async getBudget(scope, id) {
      const row = (await knex('budgets').where({ scope, subject_id: id }).first()) as BudgetRow | undefined;
      return row && budgetFromRow(row);
    },
    async setBudget(scope, id, limitUsd, by) {
      const at = new Date(now());
      const [row] = (await knex('budgets')
        .insert({ scope, subject_id: id, limit_micros: micros(limitUsd), updated_by: by, created_at: at, updated_at: at })
        .onConflict(['scope', 'subject_id'])
        .merge({ limit_micros: micros(limitUsd), updated_by: by, updated_at: at })
        .returning('*')) as BudgetRow[];
      return budgetFromRow(row!);
    },
    async ensureBudget(scope, id, limitUsd, by) {
      const at = new Date(now());
      await knex('budgets')
        .insert({ scope, subject_id: id, limit_micros: micros(limitUsd), updated_by: by, created_at: at, updated_at: at })
        .onConflict(['scope', 'subject_id'])
        .ignore();
    },
    async listBudgets(scope) {
      const q = knex('budgets').orderBy(['scope', 'subject_id']).limit(1000);
      if (scope) q.where({ scope });
      return ((await q.select()) as BudgetRow[]).map(budgetFromRow);
    },
    admit: (callId, holds, amountUsd, takes, expiresAt) => admit(knex, now(), { callId, holds, amountUsd, takes, expiresAt }),
    async settle(callId, costUsd, state, tokenRefund) {
      const { rows } = (await knex.raw('SELECT cynode_egress_settle(?, ?, ?, ?) AS ok', [
        callId,
        micros(costUsd),
        state,
        Math.max(0, Math.floor(tokenRefund)),
      ])) as {
        rows: { ok: boolean }[];
      };
      return rows[0]!.ok;
    },
    async reap() {
      const lapsed = (await knex('budget_reservations')
        .where({ state: 'held' })
        .andWhere('expires_at', '<', new Date(now()))
        .orderBy('expires_at')
        .limit(500)
        .select('call_id', 'amount_micros')) as { call_id: string; amount_micros: string }[];
      for (const r of lapsed) {
        await knex.raw('SELECT cynode_egress_settle(?, ?, ?, 0)', [r.call_id, Number(r.amount_micros), 'expired']);
      }
      await knex('rate_counters')
        .where('window_start', '<', new Date(now() - 2 * RATE_WINDOW_MS))
        .delete();
      await pruneFinishedReservations(knex, now());
      return lapsed.length;
    },
  };
}
