import type { Knex } from 'knex';
import { ADMIT_FUNCTION, SETTLE_FUNCTION } from './20261201004000_add_budget_periods.js';

/**
 * A running total per rate key, so admission stops summing a whole window of `rate_events`
 * on every call (at 300 calls/s that is 18,000 rows per key, read under the key's lock):
 *  - `rate_windows`: per key, `total` is the sum of its `rate_events` taken after `horizon`;
 *  - admission moves a key's horizon up to the start of its window, subtracting only the
 *    takes that just left it, then reads the total; a window that starts before the horizon
 *    (the clock went back) is summed from the log as before, so windows stay exact;
 *  - a take adds to the total, a settlement's token refund takes off what it refunded, and
 *    the reaper moves horizons past the takes it deletes.
 * Every change to a key's total is made holding the key's advisory lock (taken in lock-id
 * order, as admission took them already), so totals never race and row locks never deadlock.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('rate_windows', (t) => {
    t.text('key').primary();
    t.timestamp('horizon', { useTz: true }).notNullable();
    t.bigInteger('total').notNullable();
  });
  await knex.raw(`INSERT INTO rate_windows (key, horizon, total) SELECT key, '-infinity', sum(amount) FROM rate_events GROUP BY key`);
  for (const sql of FUNCTIONS) await knex.raw(sql);
}

// What a key has taken after p_from; the caller holds the key's advisory lock.
export const USED_FUNCTION = `
  CREATE FUNCTION cynode_rate_used(p_key text, p_from timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
  DECLARE
    w rate_windows;
    used bigint;
  BEGIN
    INSERT INTO rate_windows (key, horizon, total) VALUES (p_key, '-infinity', 0) ON CONFLICT DO NOTHING;
    SELECT * INTO w FROM rate_windows WHERE key = p_key FOR UPDATE;
    IF p_from < w.horizon THEN
      SELECT coalesce(sum(e.amount), 0) INTO used FROM rate_events e WHERE e.key = p_key AND e.at > p_from;
      RETURN used;
    END IF;
    IF p_from > w.horizon THEN
      UPDATE rate_windows SET horizon = p_from, total = total - (
          SELECT coalesce(sum(e.amount), 0) FROM rate_events e WHERE e.key = p_key AND e.at > w.horizon AND e.at <= p_from)
        WHERE key = p_key RETURNING total INTO w.total;
    END IF;
    RETURN w.total;
  END $$`;

// Deletes takes before p_before, first moving each key's horizon past them (in lock-id order, as admission locks).
const REAP_FUNCTION = `
  CREATE FUNCTION cynode_rate_reap(p_before timestamptz) RETURNS void LANGUAGE plpgsql AS $$
  DECLARE
    k record;
    h timestamptz := p_before - interval '1 microsecond';
  BEGIN
    FOR k IN SELECT w.key, hashtextextended('cynode_rate:' || w.key, 0) AS lock_id FROM rate_windows w
        WHERE w.horizon < h AND w.total <> 0 ORDER BY 2 LOOP
      PERFORM pg_advisory_xact_lock(k.lock_id);
      PERFORM cynode_rate_used(k.key, h);
    END LOOP;
    DELETE FROM rate_events WHERE at < p_before;
  END $$`;

/** `sql` with `from` replaced by `to`; throws when `from` is not in it, so a changed function cannot be missed. */
export function swap(sql: string, from: string, to: string): string {
  if (!sql.includes(from)) throw new Error(`rate_windows migration: not found: ${from}`);
  return sql.replace(from, to);
}
const orReplace = (sql: string) => swap(sql, 'CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION');

// The admission of 20261201004000_add_budget_periods, reading each key's running total.
export const ADMIT_WINDOWED = swap(
  swap(
    orReplace(ADMIT_FUNCTION),
    'SELECT coalesce(sum(e.amount), 0) INTO used FROM rate_events e WHERE e.key = c.key AND e.at > p_now - c.win;',
    'used := cynode_rate_used(c.key, p_now - c.win);',
  ),
  `UPDATE budgets bu SET reserved_micros = bu.reserved_micros + p_amount`,
  `UPDATE rate_windows w SET total = w.total + x.amount
      FROM jsonb_to_recordset(p_counters) AS x(key text, amount bigint)
      WHERE w.key = x.key AND p_now > w.horizon;
    UPDATE budgets bu SET reserved_micros = bu.reserved_micros + p_amount`,
);

// The settlement of 20261201004000_add_budget_periods, taking a token refund off the running total too,
// under the keys' advisory locks (as admission takes them), so a key's row is only ever locked by their holder.
export const SETTLE_WINDOWED = swap(
  swap(orReplace(SETTLE_FUNCTION), 'alerts int := 0;', 'alerts int := 0;\n    e record;\n    refunded bigint;'),
  `UPDATE rate_events e SET amount = greatest(0, e.amount - p_token_refund)
        FROM jsonb_to_recordset(r.counters) AS x(key text, tokens boolean)
        WHERE x.tokens AND e.key = x.key AND e.call_id = p_call;`,
  `FOR e IN SELECT DISTINCT hashtextextended('cynode_rate:' || x.key, 0) AS lock_id
          FROM jsonb_to_recordset(r.counters) AS x(key text, tokens boolean) WHERE x.tokens ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(e.lock_id);
      END LOOP;
      FOR e IN SELECT ev.key, ev.at, ev.amount FROM rate_events ev JOIN jsonb_to_recordset(r.counters) AS x(key text, tokens boolean)
          ON x.tokens AND ev.key = x.key
          WHERE ev.call_id = p_call ORDER BY ev.key FOR UPDATE OF ev LOOP
        refunded := e.amount - greatest(0, e.amount - p_token_refund);
        UPDATE rate_events SET amount = e.amount - refunded WHERE key = e.key AND call_id = p_call;
        UPDATE rate_windows SET total = total - refunded WHERE key = e.key AND horizon < e.at;
      END LOOP;`,
);

const FUNCTIONS = [USED_FUNCTION, REAP_FUNCTION, ADMIT_WINDOWED, SETTLE_WINDOWED];

/** Back to summing the log on every admission. */
export async function down(knex: Knex): Promise<void> {
  for (const sql of [ADMIT_FUNCTION, SETTLE_FUNCTION]) await knex.raw(orReplace(sql));
  await knex.raw('DROP FUNCTION cynode_rate_reap(timestamptz)');
  await knex.raw('DROP FUNCTION cynode_rate_used(text, timestamptz)');
  await knex.schema.dropTable('rate_windows');
}
