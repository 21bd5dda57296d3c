import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The admin connection used to create and drop per-file test databases. */
export const ADMIN_URL = process.env.CYNODE_TEST_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A fresh, empty PostgreSQL database for one test file. */
export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** Creates `cynode_t_<random>` on the local PostgreSQL; `drop()` removes it (forcing off stragglers). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `cynode_t_${randomBytes(6).toString('hex')}`;
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
