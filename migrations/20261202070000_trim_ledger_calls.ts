import type { Knex } from 'knex';
import { ADMIT_WINDOWED, swap, USED_FUNCTION } from './20261201004500_create_rate_windows.js';
import { LEDGER_BATCH_BY_KEY } from './20261202060000_index_ledger_lookups.js';

/**
 * Fewer statements per admission, with the same locks in the same order. Over a benchmark run an
 * admission called `cynode_budget_roll` for every budget it holds, twice (the batch's lock step,
 * then `cynode_egress_admit`): six calls per admission on the worker path, each a function call,
 * a row lock and the period arithmetic, although most budgets have no periods to roll.
 *  - `cynode_egress_admit` and `cynode_egress_ledger_batch` lock each budget by primary key in
 *    key order, as before, and call `cynode_budget_roll` only for a budget that has periods;
 *  - `cynode_rate_used` reads its key's running total first and creates the row only when it is
 *    missing (it used to insert on every take, to find the row there).
 * A total budget's roll was a no-op; a periodic one still rolls at the same moment, under the
 * same lock. `rate_windows` rows are only created and changed under their key's advisory lock,
 * which the callers of `cynode_rate_used` hold, so reading before inserting cannot race.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(USED_LEAN);
  await knex.raw(ADMIT_LEAN);
  await knex.raw(BATCH_LEAN);
}

/** Back to rolling every held budget and inserting every key's row. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(swap(USED_FUNCTION, 'CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION'));
  await knex.raw(ADMIT_WINDOWED);
  await knex.raw(LEDGER_BATCH_BY_KEY);
}

const USED_LEAN = swap(
  swap(USED_FUNCTION, 'CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION'),
  `INSERT INTO rate_windows (key, horizon, total) VALUES (p_key, '-infinity', 0) ON CONFLICT DO NOTHING;
    SELECT * INTO w FROM rate_windows WHERE key = p_key FOR UPDATE;`,
  `SELECT * INTO w FROM rate_windows WHERE key = p_key FOR UPDATE;
    IF NOT FOUND THEN
      INSERT INTO rate_windows (key, horizon, total) VALUES (p_key, '-infinity', 0) ON CONFLICT DO NOTHING;
      SELECT * INTO w FROM rate_windows WHERE key = p_key FOR UPDATE;
    END IF;`,
);

export const ADMIT_LEAN = swap(
  swap(ADMIT_WINDOWED, 'verdict jsonb;', 'verdict jsonb;\n    per text;'),
  `PERFORM cynode_budget_roll(b.scope, b.subject_id, b.model, p_now);`,
  `SELECT bu.period INTO per FROM budgets bu WHERE bu.scope = b.scope AND bu.subject_id = b.subject_id AND bu.model = b.model FOR UPDATE;
        IF FOUND AND per <> 'total' THEN
          PERFORM cynode_budget_roll(b.scope, b.subject_id, b.model, p_now);
        END IF;`,
);

export const BATCH_LEAN = swap(
  swap(LEDGER_BATCH_BY_KEY, 'k record;', 'k record;\n    per text;'),
  `IF k.admitting THEN
        PERFORM cynode_budget_roll(k.scope, k.subject_id, k.model, at);
      ELSE
        PERFORM 1 FROM budgets bu WHERE bu.scope = k.scope AND bu.subject_id = k.subject_id AND bu.model = k.model FOR UPDATE;
      END IF;`,
  `SELECT bu.period INTO per FROM budgets bu WHERE bu.scope = k.scope AND bu.subject_id = k.subject_id AND bu.model = k.model FOR UPDATE;
      IF FOUND AND k.admitting AND per <> 'total' THEN
        PERFORM cynode_budget_roll(k.scope, k.subject_id, k.model, at);
      END IF;`,
);
