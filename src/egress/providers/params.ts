import { GatewayError } from '../../errors/index.js';
import type { Usage } from '../pricing.js';

/** The output cap forced when the caller sets none, and the most a caller may ask for. */
export const DEFAULT_MAX_OUTPUT = 4096;
export const MAX_OUTPUT = 32_768;

/** `params` as an object, or a 400 naming the operation. */
export function paramsObject(operation: string, params: unknown): Record<string, unknown> {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new GatewayError('bad_request', `params of ${operation} must be an object`);
  }
  return params as Record<string, unknown>;
}

/** A required model name. */
export function modelOf(p: Record<string, unknown>): string {
  if (typeof p.model !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$/.test(p.model)) {
    throw new GatewayError('bad_request', 'params.model must be a model name');
  }
  return p.model;
}

/** An optional positive integer no larger than `max`. */
export function optionalCap(p: Record<string, unknown>, field: string, max: number): number | undefined {
  const v = p[field];
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > max)
    throw new GatewayError('bad_request', `params.${field} must be an integer from 1 to ${max}`);
  return v as number;
}

/** Non-negative integer token counts from a provider's usage object (missing counts as 0). */
export function tokens(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0;
}

/**
 * OpenAI-style usage (the input count includes the cached part) as the price table counts it:
 * cache reads apart from the input billed at full price.
 */
export function cachedUsage(input: unknown, cached: unknown, output: unknown): Usage {
  const read = tokens(cached);
  return {
    input_tokens: Math.max(0, tokens(input) - read),
    cached_input_tokens: read,
    cache_write_tokens: 0,
    output_tokens: tokens(output),
  };
}
