import pino from 'pino';
import { connectAndMigrate, type Database } from '../../src/storage/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

/** A fresh PostgreSQL database with every migration applied, for the egress SQL tests; `drop` closes and drops it. */
export async function migratedDatabase(): Promise<Database & { drop(): Promise<void> }> {
  const tdb: TestDatabase = await createTestDatabase();
  const db = await connectAndMigrate(
    { url: tdb.url, dataDir: '', poolMax: 20, connectTimeoutMs: 5000, startupTimeoutMs: 0 },
    pino({ level: 'silent' }),
  );
  return Object.assign(db, {
    async drop() {
      await db.close();
      await tdb.drop();
    },
  });
}
