import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import type { Config } from '../config/index.js';
import { GatewayError } from '../errors/index.js';
import { createLogThrottle } from '../lib/log-throttle.js';
import { type Logger, redactUrl } from '../logging/index.js';
import { acquireDataDirLock, type DataDirLock } from './data-dir-lock.js';

/** Which engine is behind the knex handle. */
export type DatabaseKind = 'postgres' | 'embedded';

/** An open database: the knex handle every service queries through, plus health and close. */
export interface Database {
  readonly kind: DatabaseKind;
  readonly knex: Knex;
  /** A safe description for logs and status: the URL without its password, or the data dir. */
  readonly target: string;
  /** Resolves when a trivial query succeeds within `timeoutMs`; otherwise throws `database_unavailable`. */
  ping(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Opens PostgreSQL when `database.url` is set, otherwise the embedded PostgreSQL (PGlite)
 * persisted in `database.dataDir`. Both speak the same SQL, so migrations and services
 * never branch on the kind.
 */
export async function openDatabase(config: Config['database'], logger: Logger): Promise<Database> {
  const log = logger.child({ component: 'storage' });
  if (config.url) return openPostgres(config, config.url, log);
  return openEmbedded(config, log);
}

// knex writes its own warnings to the console; send them through the component logger instead.
// While the database is away it warns on every pool connection attempt: once per interval here.
function knexLog(log: Logger): Knex.Config['log'] {
  const warnings = createLogThrottle(log);
  return {
    warn: (m: unknown) => warnings.failure({ knex: String(m).split('\n')[0] }, 'knex warning'),
    error: (m: unknown) => log.error({ knex: String(m) }, 'knex error'),
    deprecate: (m: unknown) => log.warn({ knex: String(m) }, 'knex deprecation'),
    debug: (m: unknown) => log.debug({ knex: m }, 'knex debug'),
  };
}

function openPostgres(config: Config['database'], url: string, log: Logger): Database {
  const knex = knexFactory({
    log: knexLog(log),
    client: 'pg',
    connection: { connectionString: url, connectionTimeoutMillis: config.connectTimeoutMs, application_name: 'cynode-gateway' },
    pool: { min: 0, max: config.poolMax, idleTimeoutMillis: 30_000 },
    acquireConnectionTimeout: config.connectTimeoutMs + 1000,
  });
  const target = redactUrl(url);
  log.info({ target }, 'using PostgreSQL');
  return wrap('postgres', knex, target, async () => {
    await knex.destroy();
  });
}

async function openEmbedded(config: Config['database'], log: Logger): Promise<Database> {
  mkdirSync(config.dataDir, { recursive: true });
  const lock: DataDirLock = acquireDataDirLock(config.dataDir);
  try {
    await initialiseDataDir(config.dataDir, log);
  } catch (err) {
    lock.release();
    throw err;
  }
  const knex = knexFactory({
    log: knexLog(log),
    client: ClientPgLite as unknown as typeof Knex.Client,
    dialect: 'postgres',
    connection: { filename: config.dataDir } as Knex.StaticConnectionConfig,
  });
  log.info({ dataDir: config.dataDir }, 'using embedded PostgreSQL (PGlite)');
  return wrap('embedded', knex, config.dataDir, async () => {
    try {
      await knex.destroy();
    } finally {
      lock.release();
    }
  });
}

// A fresh directory is initialised in a short-lived child process (see pglite-init.ts), so
// initdb's memory peak never stays in the gateway.
async function initialiseDataDir(dataDir: string, log: Logger): Promise<void> {
  if (existsSync(join(dataDir, 'PG_VERSION'))) return;
  log.info({ dataDir }, 'initialising a new embedded database');
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const script = fileURLToPath(new URL(`./pglite-init${ext}`, import.meta.url));
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = fork(script, [dataDir], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('exit', (c) => (c === 0 ? resolve(c) : reject(new Error(`initdb failed (exit ${c}): ${stderr.trim().split('\n')[0]}`))));
  });
  log.debug({ code }, 'embedded database initialised');
}

function wrap(kind: DatabaseKind, knex: Knex, target: string, close: () => Promise<void>): Database {
  let closed = false;
  return {
    kind,
    knex,
    target,
    async ping(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await Promise.race([knex.raw('select 1'), timeout]);
      } catch (err) {
        throw new GatewayError('database_unavailable', `database unreachable: ${describe(err)}`, undefined, {
          cause: err,
        });
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await close();
    },
  };
}

/**
 * A one-line reason for a database failure that names no secret: pg's messages carry
 * codes and hosts, never the password, but we still cut them to their first line.
 */
export function describe(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = String(e?.message ?? err).split('\n')[0] ?? 'unknown error';
  return e?.code && !message.includes(e.code) ? `${e.code}: ${message}` : message;
}

/** Node socket errors that mean the database server cannot be reached. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * True when `err` says the database is out of reach (refused or cut connection, pool
 * timeout, server shutting down or starting up) rather than that a query is wrong: such
 * a failure is a 503 the caller may retry, never a 500.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  const e = err as { code?: unknown; name?: unknown; message?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  const code = typeof e.code === 'string' ? e.code : '';
  // SQLSTATE class 08 (connection exception), 57P01-57P03 (shutdown, crash, starting up), 53300 (too many connections).
  if (NETWORK_CODES.has(code) || code.startsWith('08') || /^57P0[123]$/.test(code) || code === '53300') return true;
  if (e.name === 'KnexTimeoutError') return true; // no pool connection within acquireConnectionTimeout
  // pg's own messages for a lost connection; knex prefixes them with the query.
  return (
    typeof e.message === 'string' &&
    /Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|(^| - )timeout expired$/.test(
      e.message,
    )
  );
}
