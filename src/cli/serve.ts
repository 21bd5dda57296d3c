import { resolveAdminToken } from '../auth/index.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { startGateway } from '../main.js';
import { isClusterWorker, joinCluster, parseWorkerCount, runClusterPrimary } from '../server/cluster.js';
import { parseRoles, type Role } from '../server/roles.js';
import { connectAndMigrate } from '../storage/index.js';
import { loadKeyRing } from '../vault/index.js';
import { UsageError, UsageErrorFor } from './usage.js';

/** How long closing the database and flushing logs may take after the drain grace. */
const SHUTDOWN_CLOSE_MARGIN_MS = 15_000;

/**
 * `serve`: starts the roles, logs one `gateway ready` line with the bound ports and bundle
 * revision, and on SIGTERM/SIGINT drains and exits 0 (a second signal exits at once). With
 * `workers` > 1 this process becomes the primary of that many worker processes, each a full
 * replica on the same ports and the same PostgreSQL (see `runClusterPrimary`).
 */
export async function runServe(config: Config, logger: Logger, roleArg: string, workersArg = '1'): Promise<number> {
  let roles: Role[];
  let workers: number;
  try {
    roles = parseRoles(roleArg);
    workers = parseWorkerCount(workersArg);
  } catch (err) {
    throw UsageErrorFor(err);
  }
  if (isClusterWorker()) return serveProcess(config, logger, roles, true);
  if (workers === 1) return serveProcess(config, logger, roles, false);
  if (!config.database.url) {
    throw new UsageError('--workers above 1 needs PostgreSQL (DATABASE_URL): the embedded database serves one process');
  }
  await prepareOnce(config, logger);
  return runClusterPrimary({
    workers,
    logger,
    shutdownTimeoutMs: config.server.shutdownTimeoutMs,
    closeMarginMs: SHUTDOWN_CLOSE_MARGIN_MS,
  });
}

/**
 * What the workers would otherwise race for, done once before they start: the generated admin
 * token and master key files (created on first start) and the migrations. A database that is
 * not reachable fails here, before any worker is forked.
 */
async function prepareOnce(config: Config, logger: Logger): Promise<void> {
  resolveAdminToken(config.auth, logger);
  loadKeyRing(config.vault, logger);
  const db = await connectAndMigrate(config.database, logger);
  await db.close();
}

/** One gateway process: alone (`gateway ready`), or as a cluster worker (it reports to the primary instead). */
async function serveProcess(config: Config, logger: Logger, roles: Role[], worker: boolean): Promise<number> {
  const started = performance.now();
  const gateway = await startGateway({ config, logger, roles });
  const status = gateway.policy.status();
  const ready = {
    listening: gateway.listening.map(({ role, host, port }) => ({ role, host, port })),
    database: gateway.db.kind,
    bundle: status.active?.revision ?? null,
  };
  logger.info({ ...ready, startupMs: Math.round(performance.now() - started) }, worker ? 'worker ready' : 'gateway ready');
  process.on('unhandledRejection', (err) => {
    logger.fatal({ err }, 'unhandled promise rejection; exiting');
    logger.flush(() => process.exit(1));
  });

  // A worker's IPC channel to the primary keeps its event loop alive: it leaves with its code.
  const done = (resolve: (code: number) => void, code: number) => logger.flush(() => (worker ? process.exit(code) : resolve(code)));
  return new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals | 'primary') => {
      if (signalled) {
        logger.warn({ signal }, 'second signal; exiting now');
        logger.flush(() => process.exit(1));
        return;
      }
      signalled = true;
      logger.info({ signal, graceMs: config.server.shutdownTimeoutMs }, worker ? 'worker shutting down' : 'shutting down');
      // Draining is bounded by the grace period; closing the parts after it must not hang
      // forever either, or a supervisor's SIGTERM would never end the process.
      setTimeout(() => {
        logger.error('shutdown did not finish in time; exiting');
        logger.flush(() => process.exit(1));
      }, config.server.shutdownTimeoutMs + SHUTDOWN_CLOSE_MARGIN_MS).unref();
      gateway.stop().then(
        () => {
          logger.info(worker ? 'worker shutdown complete' : 'shutdown complete');
          done(resolve, 0);
        },
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          done(resolve, 1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    if (worker)
      joinCluster(
        ready,
        () => onSignal('primary'),
        (done) => logger.flush(done),
      );
    else process.on('SIGINT', onSignal);
  });
}
