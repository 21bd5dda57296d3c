import { cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { packageRoot } from '../../src/lib/package-root.js';
import { openDatabase } from '../../src/storage/index.js';
import { type Config, loadConfig } from '../../src/config/index.js';
import { bundlePath } from './bundle.js';

/** The admin bearer token test gateways run with. */
export const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

/** A fresh temporary folder. */
export function tempDir(prefix = 'cynode-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * A new embedded data directory, copied from a template initialised once per run (initdb in
 * PGlite takes seconds). The template is built in a temp folder and renamed into place, so
 * concurrent test files never see half of one. Tests of first-time initialisation use
 * `tempDir()` instead.
 */
export async function embeddedDataDir(): Promise<string> {
  const template = join(packageRoot(), 'build', 'test', 'pglite-template');
  if (!existsSync(join(template, 'PG_VERSION'))) {
    mkdirSync(join(template, '..'), { recursive: true });
    const staging = tempDir('cynode-pglite-template-');
    const db = await openDatabase(
      { url: null, dataDir: staging, poolMax: 1, connectTimeoutMs: 5000, startupTimeoutMs: 0 },
      pino({ level: 'silent' }),
    );
    await db.knex.raw('select 1');
    await db.close();
    try {
      renameSync(staging, template);
    } catch {
      rmSync(staging, { recursive: true, force: true }); // another test file won the race
    }
  }
  const dir = join(tempDir('cynode-pglite-'), 'data');
  cpSync(template, dir, { recursive: true });
  return dir;
}

/**
 * The real config loader over the shipped default.yaml, with test overrides given as the
 * same env variables an operator would set: ports 0, a temp data dir, quiet logs.
 */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    cwd: process.cwd(),
    env: {
      CYNODE_CONTROL_PORT: '0',
      CYNODE_MCP_PORT: '0',
      CYNODE_EGRESS_PORT: '0',
      CYNODE_DATA_DIR: join(tempDir('cynode-data-'), 'unused'),
      CYNODE_BUNDLE: bundlePath(),
      CYNODE_LOG_LEVEL: 'silent',
      CYNODE_SHUTDOWN_TIMEOUT_MS: '2000',
      CYNODE_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      CYNODE_MASTER_KEY_FILE: join(tempDir('cynode-vault-'), 'master-key'),
      CYNODE_POLICY_ALLOW_UNSIGNED: 'true',
      CYNODE_DECISION_LOG_FLUSH_INTERVAL_MS: '20',
      ...env,
    },
  });
}
