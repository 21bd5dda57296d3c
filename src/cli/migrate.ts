import { parseArgs } from 'node:util';
import type { Config } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { connectAndMigrate, migrateRollback, migrationStatus, openDatabase } from '../storage/index.js';
import { UsageError } from './usage.js';

/** `migrate [up|down|status] [--all]`: migrations on demand, against the configured database. */
export async function runMigrate(config: Config, logger: Logger, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { all: { type: 'boolean', default: false } } });
  const action = positionals[0] ?? 'up';
  if (!['up', 'down', 'status'].includes(action) || positionals.length > 1) {
    throw new UsageError(`migrate takes up, down or status, not '${positionals.join(' ')}'`);
  }
  if (action === 'up') {
    const db = await connectAndMigrate(config.database, logger);
    const { applied } = await migrationStatus(db.knex);
    await db.close();
    console.log(`database ${db.target} is at the latest migration (${applied.length} applied)`);
    return 0;
  }
  const db = await openDatabase(config.database, logger);
  try {
    if (action === 'down') {
      const reverted = await migrateRollback(db.knex, values.all);
      console.log(reverted.length ? `reverted: ${reverted.join(', ')}` : 'nothing to revert');
    } else {
      const { applied, pending } = await migrationStatus(db.knex);
      for (const name of applied) console.log(`applied  ${name}`);
      for (const name of pending) console.log(`pending  ${name}`);
    }
  } finally {
    await db.close();
  }
  return 0;
}
