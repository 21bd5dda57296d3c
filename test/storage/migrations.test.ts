import { existsSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import pino from 'pino';
import { migrateLatest, migrateRollback, migrationStatus, openDatabase, type Database } from '../../src/storage/index.js';
import { embeddedDataDir, tempDir, testConfig } from '../helpers/config.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

const silent = pino({ level: 'silent' });
let pgDb: TestDatabase;

test.before(async () => {
  pgDb = await createTestDatabase();
});
test.after.always(async () => {
  await pgDb?.drop();
});

const kinds: [string, () => Promise<Database>][] = [
  ['PostgreSQL', () => openDatabase(testConfig({ DATABASE_URL: pgDb.url }).database, silent)],
  ['embedded PGlite', async () => openDatabase(testConfig({ CYNODE_DATA_DIR: await embeddedDataDir() }).database, silent)],
];

async function tables(db: Database): Promise<string[]> {
  const rows = (await db.knex('information_schema.tables').where({ table_schema: 'public' }).select('table_name')) as {
    table_name: string;
  }[];
  return rows.map((r) => r.table_name).sort();
}

for (const [kind, open] of kinds) {
  test.serial(`${kind}: migrations go up, down and up again`, async (t) => {
    const db = await open();
    try {
      const expected = (await migrationStatus(db.knex)).pending;
      t.true(expected.length > 0);
      t.deepEqual(await migrateLatest(db.knex), expected);
      t.true((await tables(db)).includes('settings'));
      t.deepEqual(await migrateLatest(db.knex), [], 'a second run applies nothing');

      await db.knex('settings').insert({ key: 'cloud_routing.enabled', value: JSON.stringify(false), updated_by: 'test' });
      const row = (await db.knex('settings').where({ key: 'cloud_routing.enabled' }).first()) as { value: unknown };
      t.is(row.value, false);

      t.deepEqual((await migrateRollback(db.knex, true)).sort(), [...expected].sort());
      t.false((await tables(db)).includes('settings'));
      t.deepEqual((await migrationStatus(db.knex)).applied, []);

      t.deepEqual(await migrateLatest(db.knex), expected);
      t.deepEqual((await migrationStatus(db.knex)).pending, []);
    } finally {
      await db.close();
    }
  });
}

test.serial('both databases record the same migration names', async (t) => {
  const names: string[][] = [];
  for (const [, open] of kinds) {
    const db = await open();
    try {
      await migrateLatest(db.knex);
      names.push((await db.knex('knex_migrations').orderBy('id').pluck('name')) as string[]);
    } finally {
      await db.close();
    }
  }
  t.deepEqual(names[0], names[1]);
  t.true(
    names[0]!.every((n) => /^\d{14}_[a-z0-9_]+$/.test(n)),
    'names carry no file extension',
  );
});

test.serial('the embedded data directory is locked against a second gateway and persists data', async (t) => {
  const dataDir = await embeddedDataDir();
  const config = testConfig({ CYNODE_DATA_DIR: dataDir }).database;
  const first = await openDatabase(config, silent);
  await migrateLatest(first.knex);
  await first.knex('settings').insert({ key: 'k', value: JSON.stringify({ on: true }), updated_by: 'test' });
  await t.throwsAsync(() => openDatabase(config, silent), { message: /in use by process/ });
  await first.close();

  const second = await openDatabase(config, silent);
  try {
    const row = (await second.knex('settings').where({ key: 'k' }).first()) as { value: unknown };
    t.deepEqual(row.value, { on: true });
  } finally {
    await second.close();
  }
});

test.serial('a brand-new data directory is initialised, then opened (initdb runs out of process)', async (t) => {
  const dataDir = join(tempDir('cynode-pglite-'), 'fresh');
  const db = await openDatabase(testConfig({ CYNODE_DATA_DIR: dataDir }).database, silent);
  try {
    t.true(existsSync(join(dataDir, 'PG_VERSION')));
    t.deepEqual(await migrateLatest(db.knex), (await migrationStatus(db.knex)).applied);
  } finally {
    await db.close();
  }
});

test.serial('ping fails with database_unavailable when PostgreSQL does not answer', async (t) => {
  const db = await openDatabase(
    testConfig({ DATABASE_URL: 'postgres://gw:secret-pw@127.0.0.1:1/none', CYNODE_DATABASE_CONNECT_TIMEOUT_MS: '500' }).database,
    silent,
  );
  try {
    const err = await t.throwsAsync(() => db.ping(1000), { message: /database unreachable/ });
    t.is((err as unknown as { code: string }).code, 'database_unavailable');
    t.false(err!.message.includes('secret-pw'));
    t.is(db.target, 'postgres://gw:***@127.0.0.1:1/none');
  } finally {
    await db.close();
  }
});
