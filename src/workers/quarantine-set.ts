import type { Knex } from 'knex';

/** The NOTIFY channel of worker session changes: `quarantine:<node>`, `release:<node>`, `ended:<node>`. */
export const WORKERS_CHANNEL = 'cynode_workers';

/**
 * The node ids under quarantine as this replica knows them: checked on every Worker API and
 * agent call without a database round trip. NOTIFY adds and removes entries at once; a
 * periodic refresh (and one after every reconnect of the listener) reloads the whole set, so
 * a missed notification is caught up. The set only ever denies, so a stale entry is never
 * an allow the database would refuse: the stored row is checked as well.
 */
export interface QuarantineSet {
  has(nodeId: string): boolean;
  add(nodeId: string): void;
  delete(nodeId: string): void;
  /** Reloads the set from the database; answers the node ids now in it. */
  refresh(): Promise<string[]>;
  size(): number;
}

/** Creates the set over `workers.quarantined_at`; empty until the first refresh. */
export function createQuarantineSet(knex: Knex): QuarantineSet {
  let ids = new Set<string>();
  // Bumped by every add and delete: a reload that overlapped one is read again, so a
  // notification that arrived meanwhile is never overwritten by the older snapshot.
  let changes = 0;
  const load = async () =>
    ((await knex('workers').whereNotNull('quarantined_at').select('node_id')) as { node_id: string }[]).map((r) => r.node_id);
  return {
    has: (nodeId) => ids.has(nodeId),
    add(nodeId) {
      changes++;
      ids.add(nodeId);
    },
    delete(nodeId) {
      changes++;
      ids.delete(nodeId);
    },
    async refresh() {
      for (let tries = 0; ; tries++) {
        const before = changes;
        const loaded = await load();
        if (changes === before || tries >= 3) {
          ids = new Set(loaded);
          return loaded;
        }
      }
    },
    size: () => ids.size,
  };
}
