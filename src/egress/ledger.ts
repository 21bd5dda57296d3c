import type { Knex } from 'knex';
import { type Batcher, createBatcher } from '../lib/batcher.js';
import { type Budget, type BudgetOptions, type BudgetRow, BUDGETS_NOW, budgetFromRow, type BudgetScope, micros, usd } from './budgets.js';
import { pruneFinishedReservations } from '../audit/retention.js';

export { BUDGET_SCOPES, type Budget, type BudgetRow, budgetFromRow, type BudgetScope, checkBudgetKey } from './budgets.js';

/** A budget a call's reservation is held against; a missing `required` budget refuses the call. */
export interface Hold {
  scope: BudgetScope;
  subject_id: string;
  /** The budget for one model; absent or '': the budget for every model. */
  model?: string;
  required: boolean;
}

/** One rate limit to take from: `amount` units of `limit` in the sliding window ending now. */
export interface RateTake {
  key: string;
  limit: number;
  amount: number;
  /** Token takes are reconciled at settlement to the real count. */
  tokens: boolean;
  /**
   * When the take is counted (default: the admission's time). A prepaid block dates its takes
   * at the end of its draw window, so no call it admits leaves the window before its unit does.
   */
  at?: Date;
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
 * or nothing; `settle` charges the real cost and releases the rest, in the period the call
 * was reserved in. A reservation nobody settles (a replica killed mid-call) expires and is
 * charged in full: spend is never under-counted, so a budget is never overspent.
 */
export interface Ledger {
  /** The ledger's clock (ms since the epoch): the time admissions, settlements and budget periods are reckoned at. */
  now(): number;
  getBudget(scope: BudgetScope, id: string, model?: string | null): Promise<Budget | undefined>;
  setBudget(scope: BudgetScope, id: string, limitUsd: number, by: string, options?: BudgetOptions): Promise<Budget>;
  /** Creates a budget only if none exists (a job's budget becomes its task's on first use). */
  ensureBudget(scope: BudgetScope, id: string, limitUsd: number, by: string): Promise<void>;
  listBudgets(scope?: BudgetScope): Promise<Budget[]>;
  admit(callId: string, holds: Hold[], amountUsd: number, takes: RateTake[], expiresAt: Date): Promise<Refusal | undefined>;
  /**
   * Charges `costUsd` and releases the rest; false when the reservation was already settled.
   * `tokenRefund` is what the token estimate took beyond the real count (negative: it fell short);
   * `unitRefund`, what each non-token take gives back (a prepaid block's calls it did not admit).
   */
  settle(callId: string, costUsd: number, state: 'settled' | 'released', tokenRefund: number, unitRefund?: number): Promise<boolean>;
  /** Charges lapsed reservations in full and drops rate takes past their window; returns how many lapsed. */
  reap(): Promise<number>;
}

/** The sliding window of RPM/TPM limits. */
export const RATE_WINDOW_MS = 60_000;

/** What the ledger is built from. */
export interface LedgerDeps {
  knex: Knex;
  /** The clock; tests drive it. */
  now?: () => number;
  /** Told when a settlement crossed a soft limit (the alert row is claimed in the database). */
  onSoftLimit?: () => void;
}

/** One call's admission as `cynode_egress_ledger_batch` takes it (money in micros, times in ISO 8601). */
interface Admission {
  call: string;
  holds: Hold[];
  amount: number;
  counters: { key: string; amount: number; lim: number; window_ms: number; tokens: boolean; at?: string }[];
  expires: string;
  now: string;
}

/** One call's settlement as `cynode_egress_ledger_batch` takes it. */
interface Settlement {
  call: string;
  cost: number;
  state: string;
  refund: number;
  /** Units each non-token take gives back. */
  units: number;
  now: string;
}

/** The most admissions and settlements one statement carries. */
const MAX_BATCH = 64;

/** One item of the ledger's group commit, with what its function answers. */
type LedgerItem = { admit: Admission } | { settle: Settlement };
type LedgerOutcome = Record<string, unknown>;

/**
 * Group commit of admissions and settlements: the ones that arrive while a statement is in
 * flight go together in the next, each with its own outcome (migrations/*_batch_egress_ledger.ts).
 */
function ledgerBatcher(knex: Knex): Batcher<LedgerItem, LedgerOutcome> {
  return createBatcher(async (items: LedgerItem[]) => {
    const settles = items.flatMap((i) => ('settle' in i ? [i.settle] : []));
    const admits = items.flatMap((i) => ('admit' in i ? [i.admit] : []));
    const { rows } = (await knex.raw('SELECT cynode_egress_ledger_batch(?::jsonb, ?::jsonb) AS r', [
      JSON.stringify(settles),
      JSON.stringify(admits),
    ])) as { rows: { r: { settled: LedgerOutcome[]; admitted: LedgerOutcome[] } }[] };
    const { settled, admitted } = rows[0]!.r;
    let s = 0;
    let a = 0;
    return items.map((i) => ('settle' in i ? settled[s++]! : admitted[a++]!));
  }, MAX_BATCH);
}

/** A verdict of `cynode_egress_admit` as a refusal, or undefined when the call was admitted at `t`. */
function refusalOf(r: Record<string, unknown>, t: number): Refusal | undefined {
  if (r.ok === true) return undefined;
  switch (r.reason) {
    case 'rate_limited':
      return { reason: 'rate_limited', key: String(r.key), retryAfterMs: Math.max(1, Date.parse(String(r.retry_at)) - t) };
    case 'budget_exceeded':
      return { reason: 'budget_exceeded', scope: String(r.scope), remainingUsd: usd(Number(r.remaining_micros ?? 0)) };
    case 'budget_missing':
      return { reason: 'budget_missing', scope: String(r.scope) };
    default:
      return { reason: 'replayed' };
  }
}

/** Takes every rate limit and reserves `amountUsd` against every hold, all or nothing, at `t`, in the next ledger batch. */
async function admit(
  batch: Batcher<LedgerItem, LedgerOutcome>,
  t: number,
  call: { callId: string; holds: Hold[]; amountUsd: number; takes: RateTake[]; expiresAt: Date },
): Promise<Refusal | undefined> {
  const counters = call.takes.map((k) => ({
    key: k.key,
    amount: k.amount,
    lim: k.limit,
    window_ms: RATE_WINDOW_MS,
    tokens: k.tokens,
    ...(k.at && { at: k.at.toISOString() }),
  }));
  const verdict = await batch.submit({
    admit: {
      call: call.callId,
      holds: call.holds,
      amount: micros(call.amountUsd),
      counters,
      expires: call.expiresAt.toISOString(),
      now: new Date(t).toISOString(),
    },
  });
  return refusalOf(verdict, t);
}

/** Sets a budget in one transaction: its ended period is closed first, then the definition replaced. */
async function setBudget(
  knex: Knex,
  at: Date,
  key: { scope: BudgetScope; id: string; model: string },
  def: Required<BudgetOptions> & { limitUsd: number; by: string },
) {
  return knex.transaction(async (trx) => {
    await trx.raw('SELECT cynode_budget_roll(?, ?, ?, ?)', [key.scope, key.id, key.model, at]);
    // A changed period starts from now and keeps what the current one spent and holds: never more room than before.
    const { rows } = (await trx.raw(
      `WITH u AS (
        INSERT INTO budgets AS b (scope, subject_id, model, limit_micros, soft_limit_micros, period, reset, anchor_at, period_start, updated_by, created_at, updated_at)
        SELECT ?, ?, ?, ?, ?, ?, ?, ?::timestamptz, p.period_start, ?, ?, ? FROM cynode_budget_period(?, ?, ?::timestamptz, ?::timestamptz) p
        ON CONFLICT (scope, subject_id, model) DO UPDATE SET
          limit_micros = EXCLUDED.limit_micros, soft_limit_micros = EXCLUDED.soft_limit_micros,
          updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at, period = EXCLUDED.period, reset = EXCLUDED.reset,
          anchor_at = CASE WHEN (b.period, b.reset) = (EXCLUDED.period, EXCLUDED.reset) THEN b.anchor_at ELSE EXCLUDED.anchor_at END,
          period_start = CASE WHEN (b.period, b.reset) = (EXCLUDED.period, EXCLUDED.reset) THEN b.period_start ELSE EXCLUDED.period_start END
        RETURNING b.*)
      SELECT u.*, p.period_start AS current_start, p.resets_at FROM u, cynode_budget_period(u.period, u.reset, u.anchor_at, ?::timestamptz) p`,
      [
        key.scope,
        key.id,
        key.model,
        micros(def.limitUsd),
        def.softLimitUsd === null ? null : micros(def.softLimitUsd),
        def.period,
        def.reset,
        at,
        def.by,
        at,
        at,
        def.period,
        def.reset,
        at,
        at,
        at,
      ],
    )) as { rows: BudgetRow[] };
    return budgetFromRow(rows[0]!);
  });
}

/** The ledger over `budgets`, `budget_periods`, `budget_reservations`, `rate_events` and `rate_windows`; `now` is the clock tests control. */
export function createLedger(deps: LedgerDeps): Ledger {
  const { knex } = deps;
  const now = deps.now ?? Date.now;
  const batch = ledgerBatcher(knex);
  const settleAt = async (callId: string, costMicros: number, state: string, tokenRefund: number, unitRefund = 0): Promise<boolean> => {
    const r = (await batch.submit({
      settle: { call: callId, cost: costMicros, state, refund: tokenRefund, units: unitRefund, now: new Date(now()).toISOString() },
    })) as { ok: boolean; alerts: number };
    if (r.alerts > 0) deps.onSoftLimit?.();
    return r.ok;
  };
  const rowsNow = async (where: string, bindings: Knex.RawBinding[]) =>
    (
      (await knex.raw(`SELECT * FROM (${BUDGETS_NOW}) b WHERE ${where} ORDER BY scope, subject_id, model LIMIT 1000`, [
        new Date(now()),
        ...bindings,
      ])) as { rows: BudgetRow[] }
    ).rows.map(budgetFromRow);

  return {
    now,
    async getBudget(scope, id, model) {
      return (await rowsNow('scope = ? AND subject_id = ? AND model = ?', [scope, id, model ?? '']))[0];
    },
    setBudget: (scope, id, limitUsd, by, options = {}) =>
      setBudget(
        knex,
        new Date(now()),
        { scope, id, model: options.model ?? '' },
        {
          limitUsd,
          by,
          period: options.period ?? 'total',
          reset: options.reset ?? 'calendar',
          softLimitUsd: options.softLimitUsd ?? null,
          model: options.model ?? null,
        },
      ),
    async ensureBudget(scope, id, limitUsd, by) {
      const at = new Date(now());
      await knex('budgets')
        .insert({ scope, subject_id: id, limit_micros: micros(limitUsd), updated_by: by, created_at: at, updated_at: at, anchor_at: at })
        .onConflict(['scope', 'subject_id', 'model'])
        .ignore();
    },
    listBudgets: (scope) => (scope ? rowsNow('scope = ?', [scope]) : rowsNow('true', [])),
    admit: (callId, holds, amountUsd, takes, expiresAt) => admit(batch, now(), { callId, holds, amountUsd, takes, expiresAt }),
    settle: (callId, costUsd, state, tokenRefund, unitRefund = 0) =>
      settleAt(callId, micros(costUsd), state, Math.trunc(tokenRefund), Math.trunc(unitRefund)),
    async reap() {
      const at = new Date(now());
      const lapsed = (await knex('budget_reservations')
        .where({ state: 'held' })
        .andWhere('expires_at', '<', at)
        .orderBy('expires_at')
        .limit(500)
        .select('call_id', 'amount_micros')) as { call_id: string; amount_micros: string }[];
      // Submitted together, they settle in as few statements as the batch size allows.
      await Promise.all(lapsed.map((r) => settleAt(r.call_id, Number(r.amount_micros), 'expired', 0)));
      // Moves each key's running total past the takes it deletes (migrations/*_create_rate_windows.ts).
      await knex.raw('SELECT cynode_rate_reap(?)', [new Date(at.getTime() - 2 * RATE_WINDOW_MS)]);
      await pruneFinishedReservations(knex, now());
      return lapsed.length;
    },
  };
}
