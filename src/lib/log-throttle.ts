import type { Logger } from '../logging/index.js';

/** How often a repeating failure is logged at most, unless a caller says otherwise. */
export const LOG_THROTTLE_INTERVAL_MS = 10_000;

/**
 * One kind of failure that can repeat many times a second (every request and every pool
 * connection attempt while the database is down), logged so that an outage reads as a few
 * lines: the first occurrence at once, then at most one line per interval carrying
 * `repeated` (how many occurrences that line stands for besides itself), and one line when
 * it ends.
 */
export interface LogThrottle {
  /** One occurrence: logged now when it is the first or the interval has passed since the last line; counted otherwise. */
  failure(fields: Record<string, unknown>, msg: string): void;
  /** Things work again: when failures were seen, one info line says so with `failures`, their number in all. */
  recovered(msg: string, fields?: Record<string, unknown>): void;
}

/** Where and how a throttle logs. */
export interface LogThrottleOptions {
  /** The level failures are logged at (default warn). */
  level?: 'warn' | 'error';
  intervalMs?: number;
  now?: () => number;
}

/** A throttle for one kind of failure, logging through `log`. */
export function createLogThrottle(log: Logger, options: LogThrottleOptions = {}): LogThrottle {
  const { level = 'warn', intervalMs = LOG_THROTTLE_INTERVAL_MS, now = Date.now } = options;
  let lastLineAt: number | null = null;
  let unlogged = 0;
  let total = 0;
  return {
    failure(fields, msg) {
      total++;
      const at = now();
      if (lastLineAt !== null && at - lastLineAt < intervalMs) {
        unlogged++;
        return;
      }
      log[level]({ ...fields, ...(unlogged > 0 && { repeated: unlogged }) }, msg);
      lastLineAt = at;
      unlogged = 0;
    },
    recovered(msg, fields = {}) {
      if (total === 0) return;
      log.info({ ...fields, failures: total }, msg);
      lastLineAt = null;
      unlogged = 0;
      total = 0;
    },
  };
}

/**
 * Throttles keyed by what failed (an error code, a component), made on first use: for one
 * logger whose failures come in a few kinds that must not hide one another.
 */
export function createLogThrottles(log: Logger, options: LogThrottleOptions = {}): (key: string) => LogThrottle {
  const throttles = new Map<string, LogThrottle>();
  return (key) => {
    let throttle = throttles.get(key);
    if (!throttle) throttles.set(key, (throttle = createLogThrottle(log, options)));
    return throttle;
  };
}
