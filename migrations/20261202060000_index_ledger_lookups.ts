import type { Knex } from 'knex';
import { SETTLE_WINDOWED, swap } from './20261201004500_create_rate_windows.js';
import { LEDGER_BATCH } from './20261201012000_batch_egress_ledger.js';

/**
 * Two lookups of the ledger functions, rewritten as one primary-key lookup per row so their
 * plan cannot become a sequential scan. plpgsql plans each statement once per connection and
 * keeps the plan; a connection that first runs them while `rate_events` and
 * `budget_reservations` are still small (a new deployment, a new database) plans a join over a
 * scan of the whole table, and keeps scanning as the tables grow, until the next ANALYZE. On a
 * fresh database that was a third of PostgreSQL's time per api.call (a settlement's refund 1.9 ms,
 * a batch's lock step 1.3 ms, at a few thousand rows).
 *  - `cynode_egress_settle`: the token refund locks and reads this call's take of each token
 *    key by `(key, call_id)`, in key order as before;
 *  - `cynode_egress_ledger_batch`: the reservations being settled are locked by `call_id`, in
 *    call-id order as before.
 * What each function does, and the order it takes its locks in, is unchanged.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(SETTLE_BY_KEY);
  await knex.raw(LEDGER_BATCH_BY_KEY);
}

/** Back to the joins. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(SETTLE_WINDOWED);
  await knex.raw(swap(LEDGER_BATCH, 'CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION'));
}

// The settlement of 20261201004500_create_rate_windows, its refund reading each token key's take by primary key.
export const SETTLE_BY_KEY = swap(
  swap(SETTLE_WINDOWED, 'e record;', 'e record;\n    k record;'),
  `FOR e IN SELECT ev.key, ev.at, ev.amount FROM rate_events ev JOIN jsonb_to_recordset(r.counters) AS x(key text, tokens boolean)
          ON x.tokens AND ev.key = x.key
          WHERE ev.call_id = p_call ORDER BY ev.key FOR UPDATE OF ev LOOP`,
  `FOR k IN SELECT DISTINCT x.key FROM jsonb_to_recordset(r.counters) AS x(key text, tokens boolean) WHERE x.tokens ORDER BY 1 LOOP
        SELECT ev.key, ev.at, ev.amount INTO e FROM rate_events ev WHERE ev.key = k.key AND ev.call_id = p_call FOR UPDATE;
        CONTINUE WHEN NOT FOUND;`,
);

// The batch of 20261201012000_batch_egress_ledger, locking the reservations it settles one by one by call id.
export const LEDGER_BATCH_BY_KEY = swap(
  swap(LEDGER_BATCH, 'CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION'),
  `PERFORM 1 FROM budget_reservations r
      WHERE r.call_id IN (SELECT (s->>'call')::uuid FROM jsonb_array_elements(p_settles) s)
      ORDER BY r.call_id FOR UPDATE;`,
  `FOR k IN SELECT DISTINCT (s->>'call')::uuid AS call FROM jsonb_array_elements(p_settles) s ORDER BY 1 LOOP
      PERFORM 1 FROM budget_reservations r WHERE r.call_id = k.call FOR UPDATE;
    END LOOP;`,
);
