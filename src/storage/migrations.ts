import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';
import type { Knex } from 'knex';

/** One knex migration module. */
interface MigrationModule {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

// `migrations/` sits two levels above this file both in the source tree (src/storage/) and
// in the compiled tree (dist/src/storage/ → dist/migrations/), so one relative URL serves both.
const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/**
 * A knex migration source over `migrations/`, naming each migration without its extension so
 * the same database is migrated identically from TypeScript (tests, tsx) and compiled JS.
 */
export class DirectoryMigrationSource implements Knex.MigrationSource<string> {
  constructor(private readonly dir: string = MIGRATIONS_DIR) {}

  async getMigrations(): Promise<string[]> {
    return readdirSync(this.dir)
      .filter((f) => /^\d{14}_[a-z0-9_]+\.(js|ts)$/.test(f))
      .sort();
  }

  getMigrationName(file: string): string {
    return file.replace(/\.(js|ts)$/, '');
  }

  async getMigration(file: string): Promise<MigrationModule> {
    const mod = (await import(pathToFileURL(join(this.dir, file)).href)) as Partial<MigrationModule>;
    if (typeof mod.up !== 'function' || typeof mod.down !== 'function') {
      throw new Error(`migration ${file} must export up() and down()`);
    }
    return mod as MigrationModule;
  }
}

const config = (): Knex.MigratorConfig => ({
  migrationSource: new DirectoryMigrationSource(),
  tableName: 'knex_migrations',
});

/** Applies every pending migration; returns the names applied. Safe with concurrent replicas (knex lock table). */
export async function migrateLatest(knex: Knex): Promise<string[]> {
  const [, applied] = (await knex.migrate.latest(config())) as [number, string[]];
  return applied;
}

/** Reverts the last batch, or every migration with `all`; returns the names reverted. */
export async function migrateRollback(knex: Knex, all = false): Promise<string[]> {
  const [, reverted] = (await knex.migrate.rollback(config(), all)) as [number, string[]];
  return reverted;
}

/** The migrations applied and pending, for `migrate status`. */
export async function migrationStatus(knex: Knex): Promise<{ applied: string[]; pending: string[] }> {
  // With a custom source, knex lists pending migrations as the source's own items (file names).
  const [done, pending] = (await knex.migrate.list(config())) as [{ name: string }[], string[]];
  return {
    applied: done.map((m) => m.name),
    pending: pending.map((file) => file.replace(/\.(js|ts)$/, '')),
  };
}
