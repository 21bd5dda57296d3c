import type { Knex } from 'knex';

/**
 * Every end of a lease is announced on `cynode_leases`, with the node id that held it as the
 * payload, so each replica can drop what it remembers of that node's leases (the MCP gateway
 * keeps a caller's live lease for at most a second). A trigger rather than a call in each
 * place a lease ends: a result, a cancel, a requeue of a lapsed lease, a release on
 * deregistration or quarantine, and any later one, all go through an UPDATE (or a DELETE) of
 * the job's row, so none can be missed. The notice goes out when the transaction commits,
 * and not at all when it rolls back. Renewals (a later expiry, same lease) announce nothing.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE FUNCTION cynode_notify_lease_end() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('cynode_leases', OLD.leased_by);
      RETURN NULL;
    END $$`);
  await knex.raw(`
    CREATE TRIGGER jobs_lease_end AFTER UPDATE ON jobs FOR EACH ROW
      WHEN (OLD.state = 'leased' AND OLD.leased_by IS NOT NULL AND (
        NEW.state IS DISTINCT FROM 'leased' OR NEW.lease_id IS DISTINCT FROM OLD.lease_id
        OR NEW.leased_by IS DISTINCT FROM OLD.leased_by
        OR NEW.lease_expires_at IS NULL OR NEW.lease_expires_at < OLD.lease_expires_at))
      EXECUTE FUNCTION cynode_notify_lease_end()`);
  await knex.raw(`
    CREATE TRIGGER jobs_lease_deleted AFTER DELETE ON jobs FOR EACH ROW
      WHEN (OLD.state = 'leased' AND OLD.leased_by IS NOT NULL)
      EXECUTE FUNCTION cynode_notify_lease_end()`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TRIGGER IF EXISTS jobs_lease_deleted ON jobs');
  await knex.raw('DROP TRIGGER IF EXISTS jobs_lease_end ON jobs');
  await knex.raw('DROP FUNCTION IF EXISTS cynode_notify_lease_end()');
}
