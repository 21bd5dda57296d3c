import { GatewayError } from '../errors/index.js';

/** How far back a replay looks unless told otherwise. */
export const DEFAULT_SINCE = '24h';
/** How many recorded decisions a replay reads unless told otherwise, and at most. */
export const DEFAULT_LIMIT = 100_000;
export const MAX_LIMIT = 1_000_000;

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * The start of a replay window: a duration back from `now` (`90s`, `30m`, `24h`, `7d`) or an
 * ISO 8601 instant. Anything else is a bad_request naming the value.
 */
export function parseSince(value: string, now: Date = new Date()): Date {
  const duration = /^(\d{1,9})([smhd])$/.exec(value);
  if (duration) return new Date(now.getTime() - Number(duration[1]) * UNIT_MS[duration[2]!]!);
  const at = /^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value) ? new Date(value) : undefined;
  if (!at || Number.isNaN(at.getTime())) {
    throw new GatewayError('bad_request', `since must be a duration (24h, 30m, 7d) or an ISO 8601 time, not '${value.slice(0, 40)}'`);
  }
  return at;
}

/** How many decisions to replay: a positive integer up to MAX_LIMIT (bad_request otherwise). */
export function parseLimit(value: string | undefined): number {
  if (value === undefined) return DEFAULT_LIMIT;
  const n = /^\d{1,7}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIMIT)
    throw new GatewayError('bad_request', `limit must be an integer from 1 to ${MAX_LIMIT}`);
  return n;
}
