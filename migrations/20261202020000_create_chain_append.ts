import type { Knex } from 'knex';

/**
 * `cynode_chain_append(table, lock, columns, hashed, rows)`: one batch of a hash-chained table
 * (decision_log, api_audit, tool_audit, worker_audit, ...) appended in one autocommit call, one
 * round trip instead of a transaction of five. It takes the chain's advisory lock (replicas
 * append one batch at a time, so the chain stays linear), reads the tail's hash (the genesis
 * hash when the table is empty), and computes each row's hash exactly as `chainHash` in
 * src/lib/hash-chain.ts does: the lowercase hex SHA-256 of the UTF-8 bytes of
 * `prev_hash || '\n' || canonical JSON`. `hashed` is a JSON array of each record's canonical
 * JSON, whose text the `json` type keeps byte for byte; `rows` (the stored fields, in the same
 * order) defaults to `hashed`. Each row's fields are read into the table's own column types; the
 * insert keeps the order given, so `seq` follows the chain. Returns the new tail hash.
 *
 * Every statement in a plpgsql function takes its own snapshot (READ COMMITTED), so the tail
 * read after the lock sees the previous holder's committed batch.
 */
export const CHAIN_APPEND_FUNCTION = `
  CREATE OR REPLACE FUNCTION cynode_chain_append(p_table text, p_lock bigint, p_columns text[], p_hashed json, p_rows json DEFAULT NULL)
  RETURNS text LANGUAGE plpgsql AS $$
  DECLARE
    head text;
    hashes text[];
    canonical text;
    names text;
    fields text;
  BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    EXECUTE format('SELECT hash FROM %I ORDER BY seq DESC LIMIT 1', p_table) INTO head;
    head := coalesce(head, repeat('0', 64));
    hashes := ARRAY[head];
    FOR canonical IN SELECT e.value::text FROM json_array_elements(p_hashed) WITH ORDINALITY AS e(value, n) ORDER BY e.n LOOP
      head := encode(sha256(convert_to(head || E'\\n' || canonical, 'UTF8')), 'hex');
      hashes := array_append(hashes, head);
    END LOOP;
    IF p_rows IS NOT NULL AND json_array_length(p_rows) <> cardinality(hashes) - 1 THEN
      RAISE EXCEPTION 'cynode_chain_append: % rows for % hashed records', json_array_length(p_rows), cardinality(hashes) - 1;
    END IF;
    SELECT string_agg(format('%I', c.name), ', ' ORDER BY c.n), string_agg(format('r.%I', c.name), ', ' ORDER BY c.n)
      INTO names, fields FROM unnest(p_columns) WITH ORDINALITY AS c(name, n);
    EXECUTE format(
      'INSERT INTO %1$I (%2$s, prev_hash, hash) SELECT %3$s, $2[r.ordinality], $2[r.ordinality + 1] '
      'FROM json_populate_recordset(NULL::%1$I, $1) WITH ORDINALITY AS r ORDER BY r.ordinality',
      p_table, names, fields)
      USING coalesce(p_rows, p_hashed), hashes;
    RETURN head;
  END $$`;

/** Creates `cynode_chain_append`. */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(CHAIN_APPEND_FUNCTION);
}

/** Drops it: the writers of an older gateway append in a transaction of their own. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION IF EXISTS cynode_chain_append(text, bigint, text[], json, json)');
}
