import type { Knex } from 'knex';

/**
 * The fleet's key generation: one row whose `generation` every replica's signing key follows.
 * A rotation (`POST /v1/keys/rotate`, or the schedule, whichever replica runs it) bumps it and
 * says so on NOTIFY `cynode_keys`; each replica then generates its own new private key in
 * memory and publishes its public half in `signing_keys`. No private key is ever stored.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('signing_key_rotations', (t) => {
    t.smallint('id').primary();
    t.bigInteger('generation').notNullable();
    t.timestamp('rotated_at', { useTz: true }).notNullable();
  });
  await knex.raw('ALTER TABLE signing_key_rotations ADD CONSTRAINT signing_key_rotations_one_row CHECK (id = 1)');
  await knex('signing_key_rotations').insert({ id: 1, generation: 0, rotated_at: knex.fn.now() });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('signing_key_rotations');
}
