import type { Config } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { StartupError } from '../lib/startup-error.js';
import { type Database, describe, openDatabase } from './database.js';
import { migrateLatest, withMigrationLock } from './migrations.js';

/**
 * Opens the configured database, waiting up to `startupTimeoutMs` for PostgreSQL to answer
 * (it often starts after the gateway in a deployment), then applies pending migrations.
 * Gives up with a StartupError that names the target without its password.
 */
export async function connectAndMigrate(config: Config['database'], logger: Logger): Promise<Database> {
  const log = logger.child({ component: 'storage' });
  let db: Database;
  try {
    db = await openDatabase(config, logger);
  } catch (err) {
    throw new StartupError(`cannot open the database: ${describe(err)}`, { cause: err });
  }
  const deadline = Date.now() + config.startupTimeoutMs;
  for (let attempt = 1; ; attempt++) {
    try {
      await db.ping(config.connectTimeoutMs);
      break;
    } catch (err) {
      if (Date.now() >= deadline) {
        await db.close().catch(() => undefined);
        throw new StartupError(
          `database ${db.target} unreachable after ${attempt} attempt(s): ${describe(err).replace(/^database unreachable: /, '')}`,
        );
      }
      log.warn({ target: db.target, attempt, err: describe(err) }, 'database not reachable yet; retrying');
      await new Promise((r) => setTimeout(r, Math.min(2000, 250 * attempt)));
    }
  }
  try {
    const migrate = () => migrateLatest(db.knex);
    // Replicas started together on a fresh database take turns (embedded: one process only).
    const applied = config.url ? await withMigrationLock(config.url, config.connectTimeoutMs, migrate) : await migrate();
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
  } catch (err) {
    await db.close().catch(() => undefined);
    throw new StartupError(`migrations failed on ${db.target}: ${describe(err)}`, { cause: err });
  }
  return db;
}
