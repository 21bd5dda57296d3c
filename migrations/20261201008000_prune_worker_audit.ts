import type { Knex } from 'knex';
import { triggerFunction } from './20261201003020_create_audit_checkpoints.js';

/**
 * The quarantine trail (`worker_audit`) joins the other hash chains under checkpoints and
 * retention: its append-only trigger lets `audit prune` remove rows at or below its cut.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(triggerFunction('worker_audit', true));
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(triggerFunction('worker_audit', false));
}
