import { GatewayError } from '../errors/index.js';

/** One model's prices, USD per 1,000,000 tokens. */
export interface ModelPrice {
  provider: string;
  input: number;
  cached_input: number;
  cache_write?: number;
  output: number;
}

/** The price table shipped in the bundle (`data.config.pricing`). */
export interface PriceTable {
  version: string;
  models: Record<string, ModelPrice>;
}

/** Token usage of one call, as the adapters normalise it. */
export interface Usage {
  /** Input tokens billed at the full input price (cache reads and writes excluded). */
  input_tokens: number;
  /** Input tokens read from the provider's prompt cache. */
  cached_input_tokens: number;
  /** Input tokens written to the provider's prompt cache (Anthropic). */
  cache_write_tokens: number;
  output_tokens: number;
}

/** Reads and checks the price table from bundle data; a missing or malformed one fails closed. */
export function priceTableFrom(data: Record<string, unknown> | undefined): PriceTable {
  const pricing = (data?.config as { pricing?: unknown } | undefined)?.pricing as Partial<PriceTable> | undefined;
  if (!pricing || typeof pricing.version !== 'string' || !pricing.models || typeof pricing.models !== 'object') {
    throw new GatewayError('bundle_unavailable', 'the active bundle has no price table (data.config.pricing)');
  }
  return pricing as PriceTable;
}

/** The price of `model`, or a refusal: a call whose cost cannot be known is not made. */
export function priceOf(table: PriceTable, provider: string, model: string): ModelPrice {
  const price = Object.prototype.hasOwnProperty.call(table.models, model) ? table.models[model] : undefined;
  if (!price || price.provider !== provider) {
    throw new GatewayError('policy_denied', `no price for ${provider} model '${model}' in price table ${table.version}`, {
      reasons: ['model_not_priced'],
    });
  }
  return price;
}

/** USD for `usage` at `price`, rounded up to the micro-dollar. */
export function costOf(usage: Usage, price: ModelPrice): number {
  const usd =
    (usage.input_tokens * price.input +
      usage.cached_input_tokens * price.cached_input +
      usage.cache_write_tokens * (price.cache_write ?? price.input) +
      usage.output_tokens * price.output) /
    1_000_000;
  return Math.ceil(usd * 1e6) / 1e6;
}

/**
 * The most a call can cost: every input character counted as a token at the dearest input
 * price (a token is never shorter than one character), plus the output cap the adapter
 * enforces on the request. The reservation is this, so settling can never exceed it.
 */
export function worstCaseCost(inputChars: number, maxOutputTokens: number, price: ModelPrice): number {
  const inputPrice = Math.max(price.input, price.cached_input, price.cache_write ?? 0);
  return Math.ceil(((inputChars * inputPrice + maxOutputTokens * price.output) / 1_000_000) * 1e6) / 1e6;
}
