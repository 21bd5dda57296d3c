import test from 'ava';
import pino from 'pino';
import { createKeyStore, type KeyStore } from '../../src/keys/index.js';
import { migrateLatest, openDatabase } from '../../src/storage/index.js';
import { testConfig } from '../helpers/config.js';
import { eventually } from '../helpers/http.js';
import { createTestDatabase } from '../helpers/postgres.js';

// Two key stores on one database stand for two replicas: they follow one key generation,
// whether it moves by an explicit rotation or by the schedule, and the schedule moves it once
// per period for the fleet, not once per replica.

const quiet = pino({ level: 'silent' });

async function twoReplicas(
  t: import('ava').ExecutionContext,
  rotationMs: number,
): Promise<{ a: KeyStore; b: KeyStore; generation(): Promise<number> }> {
  const pgDb = await createTestDatabase();
  t.teardown(() => pgDb.drop());
  const db = await openDatabase(testConfig({ DATABASE_URL: pgDb.url }).database, quiet);
  t.teardown(() => db.close());
  await migrateLatest(db.knex);
  const options = { knex: db.knex, logger: quiet, rotationMs, maxTokenTtlMs: 60_000 };
  const [a, b] = await Promise.all([createKeyStore(options), createKeyStore(options)]);
  t.teardown(() => {
    a.close();
    b.close();
  });
  const generation = async () =>
    Number(((await db.knex('signing_key_rotations').first('generation')) as { generation: string }).generation);
  return { a, b, generation };
}

test('a rotation through one store moves the other at its next sync; both old keys stay published', async (t) => {
  const { a, b, generation } = await twoReplicas(t, 3_600_000);
  const [oldA, oldB] = [a.current().kid, b.current().kid];
  const rotated = await a.rotate();
  t.not(rotated.kid, oldA);
  t.is(a.current().kid, rotated.kid);
  t.is(await generation(), 1);
  t.is(b.current().kid, oldB, 'b has not heard yet');
  await b.sync();
  t.not(b.current().kid, oldB);
  const again = b.current().kid;
  await b.sync();
  t.is(b.current().kid, again, 'a second sync of the same generation does not rotate again');
  const kids = (await a.jwks(true)).keys.map((k) => k.kid);
  for (const kid of [oldA, oldB, rotated.kid, again]) t.true(kids.includes(kid), `${kid} verifies`);
});

test('scheduled rotation moves every store, one generation per period for the fleet', async (t) => {
  const { a, b, generation } = await twoReplicas(t, 400);
  const [oldA, oldB] = [a.current().kid, b.current().kid];
  const started = Date.now();
  await eventually(() => a.current().kid !== oldA && b.current().kid !== oldB, 5_000);
  await new Promise((r) => setTimeout(r, 1_200));
  const periods = (Date.now() - started) / 400;
  const moved = await generation();
  t.log(`${moved} generations in ${periods.toFixed(1)} periods`);
  t.true(moved >= 2 && moved <= Math.ceil(periods) + 1, `${moved} generations in ${periods.toFixed(1)} periods`);
});
