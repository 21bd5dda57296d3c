import type { Knex } from 'knex';

/** The hash-chained tables whose append-only triggers learn to let a prune remove rows below its cut. */
const CHAINS = ['decision_log', 'api_audit', 'tool_audit'];

/** The append-only trigger function of `table`, as first created, or allowing deletes at or below the chain's cut. */
export const triggerFunction = (table: string, prunable: boolean) => `
  CREATE OR REPLACE FUNCTION ${table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    ${
      prunable
        ? `IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM audit_prune_cuts c WHERE c.chain = TG_TABLE_NAME AND OLD.seq <= c.seq) THEN
      RETURN OLD;
    END IF;`
        : ''
    }
    RAISE EXCEPTION '${table} is append-only';
  END $$`;

/**
 * Audit checkpoints and retention:
 *  - `audit_checkpoints`: signed heads (chain, seq, hash, time) of every hash-chained table,
 *    written periodically and at shutdown, and also sent to an outside sink; append-only;
 *  - `audit_prune_cuts`: per chain, the checkpoint up to which `audit prune` removed rows. The
 *    remaining chain verifies from the cut's hash instead of the genesis, and the append-only
 *    triggers let a DELETE through only at or below the cut, which only ever moves forward.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('audit_checkpoints', (t) => {
    t.bigIncrements('id').primary();
    t.text('chain').notNullable();
    t.bigInteger('seq').notNullable(); // 0: the chain was empty
    t.text('hash').notNullable();
    t.timestamp('at', { useTz: true, precision: 3 }).notNullable();
    t.text('kid').notNullable();
    t.jsonb('public_jwk').notNullable();
    t.text('jws').notNullable();
    t.index(['chain', 'at']);
  });
  await knex.schema.createTable('audit_prune_cuts', (t) => {
    t.text('chain').primary();
    t.bigInteger('seq').notNullable();
    t.text('hash').notNullable();
    t.bigInteger('checkpoint_id').notNullable().references('id').inTable('audit_checkpoints');
    t.timestamp('pruned_at', { useTz: true }).notNullable();
  });
  await knex.raw(`
    CREATE FUNCTION audit_checkpoints_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_TABLE_NAME = 'audit_prune_cuts' AND TG_OP = 'UPDATE' AND NEW.seq >= OLD.seq THEN
        RETURN NEW;
      END IF;
      RAISE EXCEPTION '% only moves forward', TG_TABLE_NAME;
    END $$`);
  for (const table of ['audit_checkpoints', 'audit_prune_cuts'])
    await knex.raw(
      `CREATE TRIGGER ${table}_guard BEFORE UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_guard()`,
    );
  for (const table of CHAINS) await knex.raw(triggerFunction(table, true));
}

export async function down(knex: Knex): Promise<void> {
  for (const table of CHAINS) await knex.raw(triggerFunction(table, false));
  await knex.schema.dropTable('audit_prune_cuts');
  await knex.schema.dropTable('audit_checkpoints');
  await knex.raw('DROP FUNCTION IF EXISTS audit_checkpoints_guard()');
}
