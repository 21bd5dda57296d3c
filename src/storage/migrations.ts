import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';
import type { Knex } from 'knex';
import pg from 'pg';

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

/** The advisory lock key that serialises migrations across processes (an arbitrary constant). */
const MIGRATION_LOCK_KEY = 7_306_016_110_625_412;

/**
 * Runs `fn` while holding a PostgreSQL advisory lock on a connection of its own, so replicas
 * started together on a fresh database migrate one after another: knex's lock table cannot
 * guard its own creation, and a replica that finds it locked fails instead of waiting.
 * Ending the session releases the lock, even when `fn` throws.
 */
export async function withMigrationLock<T>(url: string, connectTimeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: connectTimeoutMs,
    application_name: 'cynode-gateway-migrate',
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    return await fn();
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Applies every pending migration; returns the names applied. Concurrent processes: see `withMigrationLock`. */
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
