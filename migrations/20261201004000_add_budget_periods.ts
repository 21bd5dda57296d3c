import type { Knex } from 'knex';

/**
 * Budgets with periods, per-model budgets, soft-limit alerts and exact rate windows:
 *  - `budgets` gains `model` ('' for every model; part of the key), `period` (day | week |
 *    month | total), `reset` (calendar: UTC boundaries, ISO weeks from Monday; rolling: the
 *    same lengths counted from `anchor_at`), `soft_limit_micros`, and `period_start`, the
 *    period its `spent_micros` and `reserved_micros` belong to;
 *  - `budget_periods`: closed periods, kept so a call reserved before a boundary is charged to
 *    the period it was reserved in, even when it settles after it;
 *  - `budget_alerts`: one row per budget, period and kind (a soft limit crossed), claimed by
 *    one replica to raise the metric, the audit row and the webhook;
 *  - `rate_events`: a sliding log of what each call took from each RPM/TPM key, replacing
 *    the fixed windows of `rate_counters` (kept, unused, so `down` loses nothing).
 *
 * The clock is the gateway's: both functions take `p_now`, so tests drive time.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    ALTER TABLE budgets
      ADD COLUMN model text NOT NULL DEFAULT '',
      ADD COLUMN period text NOT NULL DEFAULT 'total',
      ADD COLUMN reset text NOT NULL DEFAULT 'calendar',
      ADD COLUMN soft_limit_micros bigint,
      ADD COLUMN anchor_at timestamptz,
      ADD COLUMN period_start timestamptz NOT NULL DEFAULT 'epoch'`);
  await knex.raw('UPDATE budgets SET anchor_at = created_at');
  await knex.raw(`
    ALTER TABLE budgets
      ALTER COLUMN anchor_at SET NOT NULL,
      DROP CONSTRAINT budgets_pkey,
      ADD PRIMARY KEY (scope, subject_id, model),
      ADD CONSTRAINT budgets_period_known CHECK (period IN ('day', 'week', 'month', 'total') AND reset IN ('calendar', 'rolling')),
      ADD CONSTRAINT budgets_soft_limit_non_negative CHECK (soft_limit_micros IS NULL OR soft_limit_micros >= 0)`);

  await knex.schema.createTable('budget_periods', (t) => {
    t.text('scope').notNullable();
    t.text('subject_id').notNullable();
    t.text('model').notNullable();
    t.timestamp('period_start', { useTz: true }).notNullable();
    t.bigInteger('limit_micros').notNullable();
    t.bigInteger('spent_micros').notNullable();
    t.bigInteger('reserved_micros').notNullable();
    t.timestamp('closed_at', { useTz: true }).notNullable();
    t.primary(['scope', 'subject_id', 'model', 'period_start']);
  });

  await knex.schema.createTable('budget_alerts', (t) => {
    t.text('scope').notNullable();
    t.text('subject_id').notNullable();
    t.text('model').notNullable();
    t.timestamp('period_start', { useTz: true }).notNullable();
    t.text('kind').notNullable(); // soft_limit
    t.uuid('call_id').notNullable(); // the settlement that crossed it
    t.bigInteger('spent_micros').notNullable();
    t.bigInteger('threshold_micros').notNullable();
    t.bigInteger('limit_micros').notNullable();
    t.timestamp('crossed_at', { useTz: true }).notNullable();
    t.integer('attempts').notNullable().defaultTo(0);
    t.timestamp('next_attempt_at', { useTz: true }).notNullable();
    t.timestamp('done_at', { useTz: true });
    t.text('outcome'); // delivered | no_webhook | failed
    t.primary(['scope', 'subject_id', 'model', 'period_start', 'kind']);
  });
  await knex.raw('CREATE INDEX budget_alerts_due_idx ON budget_alerts (next_attempt_at) WHERE done_at IS NULL');

  await knex.schema.createTable('rate_events', (t) => {
    t.text('key').notNullable();
    t.uuid('call_id').notNullable();
    t.timestamp('at', { useTz: true }).notNullable();
    t.bigInteger('amount').notNullable();
    t.primary(['key', 'call_id']);
  });
  await knex.raw('CREATE INDEX rate_events_window_idx ON rate_events (key, at)');

  await knex.raw('DROP FUNCTION cynode_egress_settle(uuid, bigint, text, bigint)');
  await knex.raw('DROP FUNCTION cynode_egress_admit(uuid, jsonb, bigint, jsonb, timestamptz)');
  for (const sql of FUNCTIONS) await knex.raw(sql);
}

// The period a budget's counters belong to at p_now, and when it ends (null: never).
const PERIOD_FUNCTION = `
  CREATE FUNCTION cynode_budget_period(p_period text, p_reset text, p_anchor timestamptz, p_now timestamptz,
      OUT period_start timestamptz, OUT resets_at timestamptz)
  LANGUAGE plpgsql IMMUTABLE AS $$
  DECLARE
    -- Every computation is on UTC wall time, whatever the session's time zone.
    now_utc timestamp := p_now AT TIME ZONE 'UTC';
    anchor_utc timestamp := p_anchor AT TIME ZONE 'UTC';
    len interval := CASE p_period WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '7 days' ELSE interval '1 month' END;
    n int;
  BEGIN
    IF p_period = 'total' THEN
      period_start := 'epoch';
      resets_at := NULL;
    ELSIF p_reset = 'calendar' THEN
      -- date_trunc('week') starts on Monday, as ISO weeks do.
      period_start := date_trunc(p_period, now_utc) AT TIME ZONE 'UTC';
      resets_at := (date_trunc(p_period, now_utc) + len) AT TIME ZONE 'UTC';
    ELSE
      IF p_period = 'month' THEN
        n := greatest(0, (extract(year FROM age(now_utc, anchor_utc)) * 12 + extract(month FROM age(now_utc, anchor_utc)))::int);
      ELSE
        n := greatest(0, floor(extract(epoch FROM now_utc - anchor_utc) / extract(epoch FROM len)))::int;
      END IF;
      -- A month from the 31st is the month's last day; step back if that overshot p_now.
      WHILE n > 0 AND anchor_utc + n * len > now_utc LOOP
        n := n - 1;
      END LOOP;
      period_start := (anchor_utc + n * len) AT TIME ZONE 'UTC';
      resets_at := (anchor_utc + (n + 1) * len) AT TIME ZONE 'UTC';
    END IF;
  END $$`;

// Closes a budget's period once p_now is past it: what was spent and reserved in it moves to
// budget_periods, where late settlements of its calls still land.
const ROLL_FUNCTION = `
  CREATE FUNCTION cynode_budget_roll(p_scope text, p_subject text, p_model text, p_now timestamptz)
  RETURNS void LANGUAGE plpgsql AS $$
  DECLARE
    b budgets;
    cur timestamptz;
  BEGIN
    SELECT * INTO b FROM budgets WHERE scope = p_scope AND subject_id = p_subject AND model = p_model FOR UPDATE;
    IF NOT FOUND THEN
      RETURN;
    END IF;
    SELECT p.period_start INTO cur FROM cynode_budget_period(b.period, b.reset, b.anchor_at, p_now) p;
    IF b.period_start >= cur THEN
      RETURN;
    END IF;
    INSERT INTO budget_periods (scope, subject_id, model, period_start, limit_micros, spent_micros, reserved_micros, closed_at)
      VALUES (b.scope, b.subject_id, b.model, b.period_start, b.limit_micros, b.spent_micros, b.reserved_micros, p_now)
      ON CONFLICT (scope, subject_id, model, period_start) DO UPDATE
        SET spent_micros = budget_periods.spent_micros + EXCLUDED.spent_micros,
            reserved_micros = budget_periods.reserved_micros + EXCLUDED.reserved_micros;
    UPDATE budgets SET spent_micros = 0, reserved_micros = 0, period_start = cur
      WHERE scope = p_scope AND subject_id = p_subject AND model = p_model;
  END $$`;

// Admission, one round trip: rate keys are locked in lock-id order (so two calls never wait
// on each other's), then checked against the sliding log in key order; budgets are rolled
// into their current period and locked in key order, counters before budgets.
export const ADMIT_FUNCTION = `
  CREATE FUNCTION cynode_egress_admit(p_call uuid, p_holds jsonb, p_amount bigint, p_counters jsonb, p_expires timestamptz, p_now timestamptz)
  RETURNS jsonb LANGUAGE plpgsql AS $$
  DECLARE
    c record;
    b record;
    used bigint;
    free_at timestamptz;
    held jsonb := '[]'::jsonb;
    required_found int := 0;
    verdict jsonb;
  BEGIN
    INSERT INTO budget_reservations (call_id, state, holds, counters, amount_micros, expires_at, created_at)
      VALUES (p_call, 'pending', '[]', p_counters, p_amount, p_expires, p_now)
      ON CONFLICT (call_id) DO NOTHING;
    IF NOT FOUND THEN
      RETURN jsonb_build_object('ok', false, 'reason', 'replayed');
    END IF;
    FOR c IN SELECT DISTINCT hashtextextended('cynode_rate:' || x.key, 0) AS lock_id
        FROM jsonb_to_recordset(p_counters) AS x(key text) ORDER BY 1 LOOP
      PERFORM pg_advisory_xact_lock(c.lock_id);
    END LOOP;
    FOR c IN SELECT x.key, x.amount, x.lim, coalesce(x.window_ms, 60000) * interval '1 millisecond' AS win
        FROM jsonb_to_recordset(p_counters) AS x(key text, amount bigint, lim bigint, window_ms bigint) ORDER BY x.key LOOP
      EXIT WHEN verdict IS NOT NULL;
      SELECT coalesce(sum(e.amount), 0) INTO used FROM rate_events e WHERE e.key = c.key AND e.at > p_now - c.win;
      IF used + c.amount > c.lim THEN
        -- The next unit frees when enough of the oldest takes leave the window.
        SELECT w.at + c.win INTO free_at FROM (
            SELECT e.at, sum(e.amount) OVER (ORDER BY e.at, e.call_id) AS run
            FROM rate_events e WHERE e.key = c.key AND e.at > p_now - c.win) w
          WHERE w.run >= used + c.amount - c.lim ORDER BY w.at LIMIT 1;
        verdict := jsonb_build_object('ok', false, 'reason', 'rate_limited', 'key', c.key, 'retry_at', coalesce(free_at, p_now + c.win));
      END IF;
    END LOOP;
    IF verdict IS NULL THEN
      FOR b IN SELECT h.scope, h.subject_id, coalesce(h.model, '') AS model
          FROM jsonb_to_recordset(p_holds) AS h(scope text, subject_id text, model text)
          ORDER BY 1, 2, 3 LOOP
        PERFORM cynode_budget_roll(b.scope, b.subject_id, b.model, p_now);
      END LOOP;
      FOR b IN SELECT bu.scope, bu.subject_id, bu.model, bu.limit_micros, bu.spent_micros, bu.reserved_micros, bu.period_start, h.required
          FROM budgets bu JOIN jsonb_to_recordset(p_holds) AS h(scope text, subject_id text, model text, required boolean)
            ON bu.scope = h.scope AND bu.subject_id = h.subject_id AND bu.model = coalesce(h.model, '')
          ORDER BY bu.scope, bu.subject_id, bu.model FOR UPDATE OF bu LOOP
        IF b.required THEN
          required_found := required_found + 1;
        END IF;
        IF verdict IS NULL AND b.spent_micros + b.reserved_micros + p_amount > b.limit_micros THEN
          verdict := jsonb_build_object('ok', false, 'reason', 'budget_exceeded', 'scope', b.scope,
            'remaining_micros', b.limit_micros - b.spent_micros - b.reserved_micros);
        END IF;
        held := held || jsonb_build_object('scope', b.scope, 'subject_id', b.subject_id, 'model', b.model, 'period_start', b.period_start);
      END LOOP;
      IF verdict IS NULL AND required_found < (SELECT count(*) FROM jsonb_to_recordset(p_holds) AS h(required boolean) WHERE h.required) THEN
        verdict := jsonb_build_object('ok', false, 'reason', 'budget_missing', 'scope', 'task');
      END IF;
    END IF;
    IF verdict IS NOT NULL THEN
      UPDATE budget_reservations SET state = 'refused', refusal = verdict->>'reason', amount_micros = 0, counters = '[]' WHERE call_id = p_call;
      RETURN verdict;
    END IF;
    INSERT INTO rate_events (key, call_id, at, amount)
      SELECT x.key, p_call, p_now, x.amount FROM jsonb_to_recordset(p_counters) AS x(key text, amount bigint);
    UPDATE budgets bu SET reserved_micros = bu.reserved_micros + p_amount, updated_at = p_now
      FROM jsonb_to_recordset(held) AS x(scope text, subject_id text, model text)
      WHERE bu.scope = x.scope AND bu.subject_id = x.subject_id AND bu.model = x.model;
    UPDATE budget_reservations SET state = 'held', holds = held WHERE call_id = p_call;
    RETURN jsonb_build_object('ok', true);
  END $$`;

// Settles a held reservation once: each hold is released from the period it was reserved in
// (a closed one in budget_periods, else the budget's current counters) and charged the real
// cost there; a soft limit crossed in the current period claims its alert row. Token takes
// are reconciled to the real count (p_token_refund may be negative: the estimate was short).
export const SETTLE_FUNCTION = `
  CREATE FUNCTION cynode_egress_settle(p_call uuid, p_cost bigint, p_state text, p_token_refund bigint, p_now timestamptz)
  RETURNS jsonb LANGUAGE plpgsql AS $$
  DECLARE
    r record;
    h record;
    alerts int := 0;
  BEGIN
    SELECT * INTO r FROM budget_reservations WHERE call_id = p_call FOR UPDATE;
    IF NOT FOUND OR r.state <> 'held' THEN
      RETURN jsonb_build_object('ok', false, 'alerts', 0);
    END IF;
    IF p_token_refund <> 0 THEN
      UPDATE rate_events e SET amount = greatest(0, e.amount - p_token_refund)
        FROM jsonb_to_recordset(r.counters) AS x(key text, tokens boolean)
        WHERE x.tokens AND e.key = x.key AND e.call_id = p_call;
    END IF;
    FOR h IN SELECT bu.scope, bu.subject_id, bu.model, bu.spent_micros, bu.soft_limit_micros, bu.limit_micros, bu.period_start AS current_start,
          x.period_start AS held_start
        FROM budgets bu JOIN jsonb_to_recordset(r.holds) AS x(scope text, subject_id text, model text, period_start timestamptz)
          ON bu.scope = x.scope AND bu.subject_id = x.subject_id AND bu.model = coalesce(x.model, '')
        ORDER BY bu.scope, bu.subject_id, bu.model FOR UPDATE OF bu LOOP
      IF h.held_start IS NOT NULL AND h.held_start < h.current_start THEN
        UPDATE budget_periods SET reserved_micros = greatest(0, reserved_micros - r.amount_micros), spent_micros = spent_micros + p_cost
          WHERE scope = h.scope AND subject_id = h.subject_id AND model = h.model AND period_start = h.held_start;
        CONTINUE WHEN FOUND;
      END IF;
      UPDATE budgets SET reserved_micros = greatest(0, reserved_micros - r.amount_micros), spent_micros = spent_micros + p_cost, updated_at = p_now
        WHERE scope = h.scope AND subject_id = h.subject_id AND model = h.model;
      IF h.soft_limit_micros IS NOT NULL AND h.spent_micros < h.soft_limit_micros AND h.spent_micros + p_cost >= h.soft_limit_micros THEN
        INSERT INTO budget_alerts (scope, subject_id, model, period_start, kind, call_id, spent_micros, threshold_micros, limit_micros, crossed_at, next_attempt_at)
          VALUES (h.scope, h.subject_id, h.model, h.current_start, 'soft_limit', p_call, h.spent_micros + p_cost, h.soft_limit_micros, h.limit_micros, p_now, p_now)
          ON CONFLICT DO NOTHING;
        IF FOUND THEN
          alerts := alerts + 1;
        END IF;
      END IF;
    END LOOP;
    UPDATE budget_reservations SET state = p_state, cost_micros = p_cost, settled_at = p_now WHERE call_id = p_call;
    RETURN jsonb_build_object('ok', true, 'alerts', alerts);
  END $$`;

// The previous signatures, for replicas still on the previous release while a rollout runs:
// the same functions on the database's clock (a take without a window is a 60 s one).
const COMPATIBLE_FUNCTIONS = [
  `CREATE FUNCTION cynode_egress_admit(p_call uuid, p_holds jsonb, p_amount bigint, p_counters jsonb, p_expires timestamptz)
   RETURNS jsonb LANGUAGE sql AS $$ SELECT cynode_egress_admit(p_call, p_holds, p_amount, p_counters, p_expires, now()) $$`,
  `CREATE FUNCTION cynode_egress_settle(p_call uuid, p_cost bigint, p_state text, p_token_refund bigint)
   RETURNS boolean LANGUAGE sql AS $$ SELECT (cynode_egress_settle(p_call, p_cost, p_state, p_token_refund, now())->>'ok')::boolean $$`,
];

const FUNCTIONS = [PERIOD_FUNCTION, ROLL_FUNCTION, ADMIT_FUNCTION, SETTLE_FUNCTION, ...COMPATIBLE_FUNCTIONS];

/**
 * Back to lifetime budgets and fixed windows: per-model budgets are dropped (the old key has
 * no model), closed periods and alerts are forgotten, and the previous functions return.
 */
export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION cynode_egress_settle(uuid, bigint, text, bigint)');
  await knex.raw('DROP FUNCTION cynode_egress_admit(uuid, jsonb, bigint, jsonb, timestamptz)');
  await knex.raw('DROP FUNCTION cynode_egress_settle(uuid, bigint, text, bigint, timestamptz)');
  await knex.raw('DROP FUNCTION cynode_egress_admit(uuid, jsonb, bigint, jsonb, timestamptz, timestamptz)');
  await knex.raw('DROP FUNCTION cynode_budget_roll(text, text, text, timestamptz)');
  await knex.raw('DROP FUNCTION cynode_budget_period(text, text, timestamptz, timestamptz)');
  await knex.schema.dropTable('rate_events');
  await knex.schema.dropTable('budget_alerts');
  await knex.schema.dropTable('budget_periods');
  await knex.raw(`DELETE FROM budgets WHERE model <> ''`);
  await knex.raw(`
    ALTER TABLE budgets
      DROP CONSTRAINT budgets_pkey,
      ADD PRIMARY KEY (scope, subject_id),
      DROP COLUMN model, DROP COLUMN period, DROP COLUMN reset, DROP COLUMN soft_limit_micros,
      DROP COLUMN anchor_at, DROP COLUMN period_start`);
  for (const sql of PREVIOUS_FUNCTIONS) await knex.raw(sql);
}

// The functions of 20261125000400_create_egress, as they were.
const PREVIOUS_FUNCTIONS = [
  `
  CREATE FUNCTION cynode_egress_admit(p_call uuid, p_holds jsonb, p_amount bigint, p_counters jsonb, p_expires timestamptz)
  RETURNS jsonb LANGUAGE plpgsql AS $$
  DECLARE
    c record;
    b record;
    held jsonb := '[]'::jsonb;
    required_found int := 0;
    verdict jsonb;
  BEGIN
    INSERT INTO budget_reservations (call_id, state, holds, counters, amount_micros, expires_at, created_at)
      VALUES (p_call, 'pending', '[]', p_counters, p_amount, p_expires, now())
      ON CONFLICT (call_id) DO NOTHING;
    IF NOT FOUND THEN
      RETURN jsonb_build_object('ok', false, 'reason', 'replayed');
    END IF;
    INSERT INTO rate_counters (key, window_start, used)
      SELECT x.key, x.window_start, 0 FROM jsonb_to_recordset(p_counters) AS x(key text, window_start timestamptz) ORDER BY x.key
      ON CONFLICT DO NOTHING;
    FOR c IN SELECT r.used, x.key, x.amount, x.lim, x.window_end
        FROM rate_counters r JOIN jsonb_to_recordset(p_counters) AS x(key text, window_start timestamptz, amount bigint, lim bigint, window_end timestamptz)
          ON r.key = x.key AND r.window_start = x.window_start
        ORDER BY r.key FOR UPDATE OF r LOOP
      IF verdict IS NULL AND c.used + c.amount > c.lim THEN
        verdict := jsonb_build_object('ok', false, 'reason', 'rate_limited', 'key', c.key, 'retry_at', c.window_end);
      END IF;
    END LOOP;
    IF verdict IS NULL THEN
      FOR b IN SELECT bu.scope, bu.subject_id, bu.limit_micros, bu.spent_micros, bu.reserved_micros, h.required
          FROM budgets bu JOIN jsonb_to_recordset(p_holds) AS h(scope text, subject_id text, required boolean)
            ON bu.scope = h.scope AND bu.subject_id = h.subject_id
          ORDER BY bu.scope, bu.subject_id FOR UPDATE OF bu LOOP
        IF b.required THEN
          required_found := required_found + 1;
        END IF;
        IF verdict IS NULL AND b.spent_micros + b.reserved_micros + p_amount > b.limit_micros THEN
          verdict := jsonb_build_object('ok', false, 'reason', 'budget_exceeded', 'scope', b.scope,
            'remaining_micros', b.limit_micros - b.spent_micros - b.reserved_micros);
        END IF;
        held := held || jsonb_build_object('scope', b.scope, 'subject_id', b.subject_id);
      END LOOP;
      IF verdict IS NULL AND required_found < (SELECT count(*) FROM jsonb_to_recordset(p_holds) AS h(required boolean) WHERE h.required) THEN
        verdict := jsonb_build_object('ok', false, 'reason', 'budget_missing', 'scope', 'task');
      END IF;
    END IF;
    IF verdict IS NOT NULL THEN
      UPDATE budget_reservations SET state = 'refused', refusal = verdict->>'reason', amount_micros = 0, counters = '[]' WHERE call_id = p_call;
      RETURN verdict;
    END IF;
    UPDATE rate_counters r SET used = r.used + x.amount
      FROM jsonb_to_recordset(p_counters) AS x(key text, window_start timestamptz, amount bigint)
      WHERE r.key = x.key AND r.window_start = x.window_start;
    UPDATE budgets bu SET reserved_micros = bu.reserved_micros + p_amount, updated_at = now()
      FROM jsonb_to_recordset(held) AS x(scope text, subject_id text)
      WHERE bu.scope = x.scope AND bu.subject_id = x.subject_id;
    UPDATE budget_reservations SET state = 'held', holds = held WHERE call_id = p_call;
    RETURN jsonb_build_object('ok', true);
  END $$`,
  `
  CREATE FUNCTION cynode_egress_settle(p_call uuid, p_cost bigint, p_state text, p_token_refund bigint)
  RETURNS boolean LANGUAGE plpgsql AS $$
  DECLARE
    r record;
  BEGIN
    SELECT * INTO r FROM budget_reservations WHERE call_id = p_call FOR UPDATE;
    IF NOT FOUND OR r.state <> 'held' THEN
      RETURN false;
    END IF;
    IF p_token_refund > 0 THEN
      PERFORM 1 FROM rate_counters rc, jsonb_to_recordset(r.counters) AS x(key text, window_start timestamptz, tokens boolean)
        WHERE x.tokens AND rc.key = x.key AND rc.window_start = x.window_start ORDER BY rc.key FOR UPDATE OF rc;
      UPDATE rate_counters rc SET used = greatest(0, rc.used - p_token_refund)
        FROM jsonb_to_recordset(r.counters) AS x(key text, window_start timestamptz, tokens boolean)
        WHERE x.tokens AND rc.key = x.key AND rc.window_start = x.window_start;
    END IF;
    PERFORM 1 FROM budgets bu, jsonb_to_recordset(r.holds) AS x(scope text, subject_id text)
      WHERE bu.scope = x.scope AND bu.subject_id = x.subject_id ORDER BY bu.scope, bu.subject_id FOR UPDATE OF bu;
    UPDATE budgets bu SET reserved_micros = greatest(0, bu.reserved_micros - r.amount_micros), spent_micros = bu.spent_micros + p_cost, updated_at = now()
      FROM jsonb_to_recordset(r.holds) AS x(scope text, subject_id text)
      WHERE bu.scope = x.scope AND bu.subject_id = x.subject_id;
    UPDATE budget_reservations SET state = p_state, cost_micros = p_cost, settled_at = now() WHERE call_id = p_call;
    RETURN true;
  END $$`,
];
