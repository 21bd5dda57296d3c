import type { Knex } from 'knex';

/**
 * Failed PSK registrations per source address, shared by every replica so that the failure
 * throttle allows the limit across the fleet, not per process. A row is written before a PSK
 * is checked (a reserved slot) and deleted again when the PSK turns out right; what stays is
 * a failure. Rows older than the throttle's window are swept by the attempts themselves.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('psk_failures', (t) => {
    t.bigIncrements('id').primary();
    t.text('source').notNullable();
    t.timestamp('failed_at', { useTz: true, precision: 3 }).notNullable();
    t.index(['source', 'failed_at']);
    t.index(['failed_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('psk_failures');
}
