import { GatewayError } from '../errors/index.js';
import type { Param } from './route.js';

/** The `limit` query parameter of a list route, as the API description states it. */
export const LIMIT_PARAM: Param = {
  in: 'query',
  name: 'limit',
  schema: { type: 'integer', minimum: 1, maximum: 1000 },
  description: 'At most this many (1-1000, default 100).',
};

/** A query parameter given once and not empty, or undefined. */
export function queryText(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The `limit` of a list route: an integer from 1 to `max` (default `fallback`), or `bad_request`. */
export function queryLimit(query: Record<string, unknown>, fallback = 100, max = 1000): number {
  const limit = Number(queryText(query, 'limit') ?? fallback);
  if (!Number.isInteger(limit) || limit < 1 || limit > max)
    throw new GatewayError('bad_request', `limit must be an integer from 1 to ${max}`);
  return limit;
}
