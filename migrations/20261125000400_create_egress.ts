import type { Knex } from 'knex';

/**
 * API Egress state shared by every replica:
 *  - `budgets`: spend limits per scope (task, user, subject) in micro-dollars, with what is
 *    spent and what is reserved by calls in flight;
 *  - `budget_reservations`: one row per call, holding its worst-case cost until it settles;
 *  - `rate_counters`: fixed-window RPM/TPM counters per key;
 *  - `api_audit`: every `api.call`, allowed or denied, append-only and hash-chained.
 *
 * Admission and settlement are one function call each, so a call costs one round trip to
 * reserve and one to settle, and concurrent calls on any replica serialise on the rows they
 * share. Both lock counters before budgets, in key order, so they cannot deadlock.
 */
export async function up(knex: Knex): Promise<void> {
  // Direct routing finds a task's latest job to know whose task it is.
  await knex.raw('CREATE INDEX jobs_task_idx ON jobs (task_id, created_at)');
  await knex.schema.createTable('budgets', (t) => {
    t.text('scope').notNullable(); // task | user | subject
    t.text('subject_id').notNullable();
    t.bigInteger('limit_micros').notNullable();
    t.bigInteger('spent_micros').notNullable().defaultTo(0);
    t.bigInteger('reserved_micros').notNullable().defaultTo(0);
    t.text('updated_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable();
    t.primary(['scope', 'subject_id']);
  });
  await knex.raw(
    'ALTER TABLE budgets ADD CONSTRAINT budgets_non_negative CHECK (limit_micros >= 0 AND spent_micros >= 0 AND reserved_micros >= 0)',
  );

  await knex.schema.createTable('budget_reservations', (t) => {
    t.uuid('call_id').primary();
    // pending (being admitted) → held → settled | released | expired; refused when admission said no
    t.text('state').notNullable();
    t.jsonb('holds').notNullable(); // [{scope, subject_id}] the budgets the amount is held against
    t.jsonb('counters').notNullable(); // [{key, window_start, amount}] rate counters consumed
    t.bigInteger('amount_micros').notNullable();
    t.bigInteger('cost_micros');
    t.text('refusal');
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable();
    t.timestamp('settled_at', { useTz: true });
  });
  await knex.raw(`CREATE INDEX budget_reservations_held_idx ON budget_reservations (expires_at) WHERE state = 'held'`);

  await knex.schema.createTable('rate_counters', (t) => {
    t.text('key').notNullable();
    t.timestamp('window_start', { useTz: true }).notNullable();
    t.bigInteger('used').notNullable();
    t.primary(['key', 'window_start']);
  });

  // Seven statements whatever the number of counters and budgets: a loop over a locking
  // query is one query.
  await knex.raw(`
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
    END $$`);

  // Settles a held reservation: the reserved amount leaves every budget it was held against
  // and the real cost is charged; token counters get back what the estimate took beyond the
  // real count. Settling twice (or a refused call) does nothing and returns false.
  await knex.raw(`
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
    END $$`);

  await knex.schema.createTable('api_audit', (t) => {
    t.bigIncrements('seq').primary();
    t.uuid('request_id').notNullable();
    t.text('gate').notNullable(); // gateway (first gate) | egress (final gate)
    t.timestamp('at', { useTz: true, precision: 3 }).notNullable();
    t.text('subject_kind').notNullable();
    t.text('subject_id').notNullable();
    t.text('task_id');
    t.text('job_id');
    t.text('user_id');
    t.text('provider');
    t.text('operation');
    t.text('model_requested');
    t.text('model_served');
    t.boolean('stream');
    t.text('outcome').notNullable(); // ok | denied | error
    t.text('error_code');
    t.text('decision_id');
    t.jsonb('reasons').notNullable();
    t.text('revision');
    t.uuid('credential_id');
    t.jsonb('tokens'); // {input, cached_input, cache_write, output}
    t.decimal('reserved_usd', 14, 6);
    t.decimal('cost_usd', 14, 6);
    t.text('price_version');
    t.integer('attempts');
    t.double('latency_ms');
    t.double('ttft_ms');
    t.text('prev_hash').notNullable();
    t.text('hash').notNullable();
  });
  await knex.raw('CREATE INDEX api_audit_request_idx ON api_audit (request_id)');
  await knex.raw('CREATE INDEX api_audit_task_idx ON api_audit (task_id, seq)');
  await knex.raw(`
    CREATE FUNCTION api_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'api_audit is append-only';
    END $$`);
  await knex.raw(
    `CREATE TRIGGER api_audit_append_only BEFORE UPDATE OR DELETE ON api_audit FOR EACH ROW EXECUTE FUNCTION api_audit_append_only()`,
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('api_audit');
  await knex.raw('DROP FUNCTION IF EXISTS api_audit_append_only()');
  await knex.raw('DROP FUNCTION IF EXISTS cynode_egress_settle(uuid, bigint, text, bigint)');
  await knex.raw('DROP FUNCTION IF EXISTS cynode_egress_admit(uuid, jsonb, bigint, jsonb, timestamptz)');
  await knex.schema.dropTable('rate_counters');
  await knex.schema.dropTable('budget_reservations');
  await knex.schema.dropTable('budgets');
  await knex.raw('DROP INDEX IF EXISTS jobs_task_idx');
}
