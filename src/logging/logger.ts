import { pino, type DestinationStream, type Logger } from 'pino';
import { CENSOR, REDACT_PATHS } from './redact.js';

export type { Logger } from 'pino';

/** Options for the root logger; `destination` lets tests capture lines. */
export interface LoggerOptions {
  level: string;
  destination?: DestinationStream;
}

/**
 * The one root logger: JSON lines, ISO time, secrets redacted by path. Components take a
 * child (`logger.child({ component: 'policy' })`) and never build loggers of their own, so
 * redaction is configured exactly here.
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'cynode-gateway', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: CENSOR },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
