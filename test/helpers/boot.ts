import pino from 'pino';
import type { Config } from '../../src/config/index.js';
import type { Logger } from '../../src/logging/index.js';
import { startGateway } from '../../src/main.js';
import { ROLES, type Role } from '../../src/server/roles.js';
import { ensureBundle } from './bundle.js';
import { embeddedDataDir, TEST_ADMIN_TOKEN, testConfig } from './config.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';
import { listeningUrl, type TestGateway } from './start.js';

/** How a test file's gateway is set up; every field has the default most files want. */
export interface BootOptions {
  /** Config overrides, as the env variables an operator would set (ports are 0 already). */
  env?: Record<string, string>;
  /** The roles to serve; all three unless given. `url()` without a role means the first. */
  roles?: readonly Role[];
  /** The root logger; silent unless given (pass `captureLogger().logger` to read lines). */
  logger?: Logger;
  /**
   * Where the gateway keeps its state. Omitted: a fresh PostgreSQL database that `stop()`
   * drops. A `TestDatabase`: one the file shares between gateways and drops itself.
   * `'embedded'`: a PGlite data directory copied from the suite's template.
   */
  database?: TestDatabase | 'embedded';
}

/** A gateway booted for a test file: the running parts, its URLs, and one way to tear it all down. */
export interface BootedGateway extends TestGateway {
  /** The PostgreSQL database it runs on (undefined on the embedded database). */
  db: TestDatabase | undefined;
  /** The config it was started with, as the loader produced it. */
  config: Config;
  /** The admin bearer token the gateway accepts. */
  adminToken: string;
  /** Stops the gateway, then drops the database if the fixture created it. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Boots an in-process gateway the way most test files need one: the suite's bundle of the
 * real policies (unless `CYNODE_BUNDLE` is given), a fresh database, the real config loader
 * with test overrides, and every listener on port 0. Call it from `test.before` and
 * `stop()` it from `test.after.always`.
 */
export async function bootGateway(options: BootOptions = {}): Promise<BootedGateway> {
  const { roles = ROLES, logger = pino({ level: 'silent' }) } = options;
  if (options.env?.CYNODE_BUNDLE === undefined) await ensureBundle();
  const owned = options.database === undefined ? await createTestDatabase() : undefined;
  const db = owned ?? (options.database === 'embedded' ? undefined : options.database);
  const storage: Record<string, string> = db ? { DATABASE_URL: db.url } : { CYNODE_DATA_DIR: await embeddedDataDir() };
  try {
    const config = testConfig({ ...storage, ...options.env });
    const gateway = await startGateway({ config, logger, roles });
    const url = (role: Role = roles[0]!) => listeningUrl(gateway.listening, role);
    let stopped: Promise<void> | undefined;
    const stop = () =>
      (stopped ??= (async () => {
        try {
          await gateway.stop();
        } finally {
          await owned?.drop();
        }
      })());
    return { gateway, url, db, config, adminToken: TEST_ADMIN_TOKEN, stop };
  } catch (err) {
    await owned?.drop();
    throw err;
  }
}
