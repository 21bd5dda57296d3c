import type { Knex } from 'knex';
import { SETTLE_BY_KEY } from './20261202060000_index_ledger_lookups.js';
import { swap } from './20261201004500_create_rate_windows.js';
import { ADMIT_LEAN, BATCH_LEAN } from './20261202070000_trim_ledger_calls.js';

/**
 * What a prepaid block of admissions needs from the ledger (src/egress/blocks.ts): one
 * reservation that covers several calls, admitted and settled like any other.
 *  - A rate take may be dated (`at` in its counter): it is recorded at that time instead of
 *    the admission's. A block dates its takes at the end of its draw window, so each unit is
 *    counted in every window any call it admits could fall in: never less than an exact
 *    per-call take would count. The window is still checked from the admission's time.
 *  - A settlement may refund units (`p_unit_refund`) of its non-token takes, as it already
 *    refunded tokens of its token takes: a block gives back the calls it did not admit.
 * Locks are taken in the same order as before; a settlement takes the advisory locks of the
 * keys it refunds, units as tokens.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(ADMIT_DATED);
  await knex.raw(SETTLE_UNITS);
  await knex.raw(SETTLE_WRAPPER);
  await knex.raw(BATCH_UNITS);
}

/** Back to takes at the admission's time and token refunds only. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(BATCH_LEAN);
  await knex.raw('DROP FUNCTION cynode_egress_settle(uuid, bigint, text, bigint, timestamptz, bigint)');
  await knex.raw(SETTLE_BY_KEY);
  await knex.raw(ADMIT_LEAN);
}

const ADMIT_DATED = swap(
  swap(
    ADMIT_LEAN,
    `SELECT x.key, p_call, p_now, x.amount FROM jsonb_to_recordset(p_counters) AS x(key text, amount bigint);`,
    `SELECT x.key, p_call, coalesce(x.at, p_now), x.amount FROM jsonb_to_recordset(p_counters) AS x(key text, amount bigint, at timestamptz);`,
  ),
  `FROM jsonb_to_recordset(p_counters) AS x(key text, amount bigint)
      WHERE w.key = x.key AND p_now > w.horizon;`,
  `FROM jsonb_to_recordset(p_counters) AS x(key text, amount bigint, at timestamptz)
      WHERE w.key = x.key AND coalesce(x.at, p_now) > w.horizon;`,
);

// The settlement of 20261202060000_index_ledger_lookups with a sixth argument: the units each
// non-token take gives back, beside the tokens each token take gives back.
const SETTLE_UNITS = swap(
  swap(
    swap(
      swap(
        swap(SETTLE_BY_KEY, 'p_token_refund bigint, p_now timestamptz)', 'p_token_refund bigint, p_now timestamptz, p_unit_refund bigint)'),
        'IF p_token_refund <> 0 THEN',
        'IF p_token_refund <> 0 OR p_unit_refund <> 0 THEN',
      ),
      `FROM jsonb_to_recordset(r.counters) AS x(key text, tokens boolean) WHERE x.tokens ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(e.lock_id);`,
      `FROM jsonb_to_recordset(r.counters) AS x(key text, tokens boolean)
          WHERE CASE WHEN x.tokens THEN p_token_refund ELSE p_unit_refund END <> 0 ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(e.lock_id);`,
    ),
    `FOR k IN SELECT DISTINCT x.key FROM jsonb_to_recordset(r.counters) AS x(key text, tokens boolean) WHERE x.tokens ORDER BY 1 LOOP`,
    `FOR k IN SELECT DISTINCT x.key, CASE WHEN x.tokens THEN p_token_refund ELSE p_unit_refund END AS refund
          FROM jsonb_to_recordset(r.counters) AS x(key text, tokens boolean)
          WHERE CASE WHEN x.tokens THEN p_token_refund ELSE p_unit_refund END <> 0 ORDER BY 1 LOOP`,
  ),
  'refunded := e.amount - greatest(0, e.amount - p_token_refund);',
  'refunded := e.amount - greatest(0, e.amount - k.refund);',
);

// The five-argument settlement refunds no units.
const SETTLE_WRAPPER = `
  CREATE OR REPLACE FUNCTION cynode_egress_settle(p_call uuid, p_cost bigint, p_state text, p_token_refund bigint, p_now timestamptz)
    RETURNS jsonb LANGUAGE sql AS $$ SELECT cynode_egress_settle(p_call, p_cost, p_state, p_token_refund, p_now, 0) $$`;

// The batch of 20261202070000_trim_ledger_calls, passing each settlement's unit refund on and
// taking the advisory locks of the keys it refunds units of.
const BATCH_UNITS = swap(
  swap(
    BATCH_LEAN,
    `JOIN budget_reservations r ON r.call_id = (s->>'call')::uuid AND r.state = 'held' AND (s->>'refund')::bigint <> 0,
          jsonb_to_recordset(r.counters) AS x(key text, tokens boolean)
          WHERE x.tokens`,
    `JOIN budget_reservations r ON r.call_id = (s->>'call')::uuid AND r.state = 'held',
          jsonb_to_recordset(r.counters) AS x(key text, tokens boolean)
          WHERE CASE WHEN x.tokens THEN (s->>'refund')::bigint ELSE coalesce((s->>'units')::bigint, 0) END <> 0`,
  ),
  `(c.v->>'refund')::bigint, (c.v->>'now')::timestamptz));`,
  `(c.v->>'refund')::bigint, (c.v->>'now')::timestamptz, coalesce((c.v->>'units')::bigint, 0)));`,
);
