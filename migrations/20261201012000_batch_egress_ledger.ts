import type { Knex } from 'knex';

/**
 * Admission and settlement of many calls in one statement (group commit): under load one
 * round trip, one transaction and one WAL flush serve every call that arrived while the last
 * batch was in flight. Each call is still admitted by `cynode_egress_admit` (all or nothing,
 * in the order given, each seeing the ones before it) and settled by `cynode_egress_settle`.
 *
 * Locks keep the order single calls take them in, so batches never deadlock with each other,
 * with single calls or with the reaper, on this replica or another: a batch first takes every
 * rate key's advisory lock it will need, in lock-id order, then every budget row it will
 * touch, in key order (rolling each into its current period as it locks it); settlement takes
 * its reservation rows first, in call-id order, as a single settlement takes its one row first.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(ADMIT_BATCH);
  await knex.raw(SETTLE_BATCH);
}

// p_calls: [{ call, holds, amount, counters, expires, now }], one verdict per call, in order.
const ADMIT_BATCH = `
  CREATE FUNCTION cynode_egress_admit_batch(p_calls jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
  DECLARE
    k record;
    c record;
    verdicts jsonb := '[]'::jsonb;
  BEGIN
    FOR k IN SELECT DISTINCT hashtextextended('cynode_rate:' || x.key, 0) AS lock_id
        FROM jsonb_array_elements(p_calls) a, jsonb_to_recordset(a->'counters') AS x(key text) ORDER BY 1 LOOP
      PERFORM pg_advisory_xact_lock(k.lock_id);
    END LOOP;
    FOR k IN SELECT DISTINCT h.scope, h.subject_id, coalesce(h.model, '') AS model
        FROM jsonb_array_elements(p_calls) a, jsonb_to_recordset(a->'holds') AS h(scope text, subject_id text, model text)
        ORDER BY 1, 2, 3 LOOP
      PERFORM cynode_budget_roll(k.scope, k.subject_id, k.model, (p_calls->0->>'now')::timestamptz);
    END LOOP;
    FOR c IN SELECT a.value AS v FROM jsonb_array_elements(p_calls) WITH ORDINALITY a ORDER BY a.ordinality LOOP
      verdicts := verdicts || jsonb_build_array(cynode_egress_admit((c.v->>'call')::uuid, c.v->'holds', (c.v->>'amount')::bigint,
        c.v->'counters', (c.v->>'expires')::timestamptz, (c.v->>'now')::timestamptz));
    END LOOP;
    RETURN verdicts;
  END $$`;

// p_calls: [{ call, cost, state, refund, now }], one outcome ({ ok, alerts }) per call, in order.
const SETTLE_BATCH = `
  CREATE FUNCTION cynode_egress_settle_batch(p_calls jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
  DECLARE
    k record;
    c record;
    outcomes jsonb := '[]'::jsonb;
  BEGIN
    PERFORM 1 FROM budget_reservations r
      WHERE r.call_id IN (SELECT (a->>'call')::uuid FROM jsonb_array_elements(p_calls) a)
      ORDER BY r.call_id FOR UPDATE;
    FOR k IN SELECT DISTINCT hashtextextended('cynode_rate:' || x.key, 0) AS lock_id
        FROM jsonb_array_elements(p_calls) a
        JOIN budget_reservations r ON r.call_id = (a->>'call')::uuid AND r.state = 'held' AND (a->>'refund')::bigint <> 0,
        jsonb_to_recordset(r.counters) AS x(key text, tokens boolean)
        WHERE x.tokens ORDER BY 1 LOOP
      PERFORM pg_advisory_xact_lock(k.lock_id);
    END LOOP;
    PERFORM 1 FROM budgets bu
      WHERE (bu.scope, bu.subject_id, bu.model) IN (
        SELECT h.scope, h.subject_id, coalesce(h.model, '')
        FROM jsonb_array_elements(p_calls) a
        JOIN budget_reservations r ON r.call_id = (a->>'call')::uuid AND r.state = 'held',
        jsonb_to_recordset(r.holds) AS h(scope text, subject_id text, model text))
      ORDER BY bu.scope, bu.subject_id, bu.model FOR UPDATE;
    FOR c IN SELECT a.value AS v FROM jsonb_array_elements(p_calls) WITH ORDINALITY a ORDER BY a.ordinality LOOP
      outcomes := outcomes || jsonb_build_array(cynode_egress_settle((c.v->>'call')::uuid, (c.v->>'cost')::bigint, c.v->>'state',
        (c.v->>'refund')::bigint, (c.v->>'now')::timestamptz));
    END LOOP;
    RETURN outcomes;
  END $$`;

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION cynode_egress_settle_batch(jsonb)');
  await knex.raw('DROP FUNCTION cynode_egress_admit_batch(jsonb)');
}
