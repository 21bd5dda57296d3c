export { isDatabaseUnavailable, openDatabase, type Database, type DatabaseKind } from './database.js';
export { connectAndMigrate } from './connect.js';
export { migrateLatest, migrateRollback, migrationStatus } from './migrations.js';
