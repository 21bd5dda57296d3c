import type { Config } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { startGateway } from '../main.js';
import { parseRoles } from '../server/roles.js';
import { UsageErrorFor } from './usage.js';

/** How long closing the database and flushing logs may take after the drain grace. */
const SHUTDOWN_CLOSE_MARGIN_MS = 15_000;

/**
 * `serve`: starts the roles, logs one `gateway ready` line with the bound ports and bundle
 * revision, and on SIGTERM/SIGINT drains and exits 0 (a second signal exits at once).
 */
export async function runServe(config: Config, logger: Logger, roleArg: string): Promise<number> {
  let roles;
  try {
    roles = parseRoles(roleArg);
  } catch (err) {
    throw UsageErrorFor(err);
  }
  const started = performance.now();
  const gateway = await startGateway({ config, logger, roles });
  const status = gateway.policy.status();
  logger.info(
    {
      listening: gateway.listening.map(({ role, host, port }) => ({ role, host, port })),
      database: gateway.db.kind,
      bundle: status.active?.revision ?? null,
      startupMs: Math.round(performance.now() - started),
    },
    'gateway ready',
  );
  process.on('unhandledRejection', (err) => {
    logger.fatal({ err }, 'unhandled promise rejection; exiting');
    logger.flush(() => process.exit(1));
  });

  return new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        logger.warn({ signal }, 'second signal; exiting now');
        logger.flush(() => process.exit(1));
        return;
      }
      signalled = true;
      logger.info({ signal, graceMs: config.server.shutdownTimeoutMs }, 'shutting down');
      // Draining is bounded by the grace period; closing the parts after it must not hang
      // forever either, or a supervisor's SIGTERM would never end the process.
      setTimeout(() => {
        logger.error('shutdown did not finish in time; exiting');
        logger.flush(() => process.exit(1));
      }, config.server.shutdownTimeoutMs + SHUTDOWN_CLOSE_MARGIN_MS).unref();
      gateway.stop().then(
        () => {
          logger.info('shutdown complete');
          logger.flush(() => resolve(0));
        },
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          logger.flush(() => resolve(1));
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
