import type { Knex } from 'knex';

/**
 * Admission and settlement of many calls in one statement (group commit): under load one
 * round trip, one transaction and one WAL flush serve every admission and settlement that
 * arrived while the last statement was in flight. Each settlement is still made by
 * `cynode_egress_settle`, then each admission by `cynode_egress_admit` (all or nothing, in
 * the order given, each seeing the ones before it).
 *
 * Locks keep the order single calls take them in, so batches never deadlock with each other,
 * with single calls or with the reaper, on this replica or another: first the reservation
 * rows being settled (in call-id order: a single settlement takes its one row first, and an
 * admission's row is new), then every rate key's advisory lock the batch needs, in lock-id
 * order, then every budget row it touches, in key order (rolling the admitted ones into
 * their current period as it locks them), and only then does any call change anything.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(LEDGER_BATCH);
}

// p_settles: [{ call, cost, state, refund, now }]; p_admits: [{ call, holds, amount, counters, expires, now }].
// Answers { settled: [{ ok, alerts }...], admitted: [verdict...] }, each in the order given.
export const LEDGER_BATCH = `
  CREATE FUNCTION cynode_egress_ledger_batch(p_settles jsonb, p_admits jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
  DECLARE
    k record;
    c record;
    settled jsonb := '[]'::jsonb;
    admitted jsonb := '[]'::jsonb;
    at timestamptz := coalesce(p_admits->0->>'now', p_settles->0->>'now')::timestamptz;
  BEGIN
    PERFORM 1 FROM budget_reservations r
      WHERE r.call_id IN (SELECT (s->>'call')::uuid FROM jsonb_array_elements(p_settles) s)
      ORDER BY r.call_id FOR UPDATE;
    FOR k IN SELECT lock_id FROM (
        SELECT hashtextextended('cynode_rate:' || x.key, 0) AS lock_id
          FROM jsonb_array_elements(p_settles) s
          JOIN budget_reservations r ON r.call_id = (s->>'call')::uuid AND r.state = 'held' AND (s->>'refund')::bigint <> 0,
          jsonb_to_recordset(r.counters) AS x(key text, tokens boolean)
          WHERE x.tokens
        UNION
        SELECT hashtextextended('cynode_rate:' || x.key, 0)
          FROM jsonb_array_elements(p_admits) a, jsonb_to_recordset(a->'counters') AS x(key text)) l
        ORDER BY 1 LOOP
      PERFORM pg_advisory_xact_lock(k.lock_id);
    END LOOP;
    FOR k IN SELECT b.scope, b.subject_id, b.model, bool_or(b.admitting) AS admitting FROM (
        SELECT h.scope, h.subject_id, coalesce(h.model, '') AS model, false AS admitting
          FROM jsonb_array_elements(p_settles) s
          JOIN budget_reservations r ON r.call_id = (s->>'call')::uuid AND r.state = 'held',
          jsonb_to_recordset(r.holds) AS h(scope text, subject_id text, model text)
        UNION ALL
        SELECT h.scope, h.subject_id, coalesce(h.model, ''), true
          FROM jsonb_array_elements(p_admits) a, jsonb_to_recordset(a->'holds') AS h(scope text, subject_id text, model text)) b
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LOOP
      IF k.admitting THEN
        PERFORM cynode_budget_roll(k.scope, k.subject_id, k.model, at);
      ELSE
        PERFORM 1 FROM budgets bu WHERE bu.scope = k.scope AND bu.subject_id = k.subject_id AND bu.model = k.model FOR UPDATE;
      END IF;
    END LOOP;
    FOR c IN SELECT s.value AS v FROM jsonb_array_elements(p_settles) WITH ORDINALITY s ORDER BY s.ordinality LOOP
      settled := settled || jsonb_build_array(cynode_egress_settle((c.v->>'call')::uuid, (c.v->>'cost')::bigint, c.v->>'state',
        (c.v->>'refund')::bigint, (c.v->>'now')::timestamptz));
    END LOOP;
    FOR c IN SELECT a.value AS v FROM jsonb_array_elements(p_admits) WITH ORDINALITY a ORDER BY a.ordinality LOOP
      admitted := admitted || jsonb_build_array(cynode_egress_admit((c.v->>'call')::uuid, c.v->'holds', (c.v->>'amount')::bigint,
        c.v->'counters', (c.v->>'expires')::timestamptz, (c.v->>'now')::timestamptz));
    END LOOP;
    RETURN jsonb_build_object('settled', settled, 'admitted', admitted);
  END $$`;

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION cynode_egress_ledger_batch(jsonb, jsonb)');
}
