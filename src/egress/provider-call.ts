import { GatewayError } from '../errors/index.js';
import type { EgressMetrics } from './metrics.js';
import { type CallOptions, type CallOutcome, callProvider } from './client.js';
import { costOf, type ModelPrice } from './pricing.js';
import type { PreparedRequest, ProviderAdapter } from './providers/types.js';

/** Where each provider is reached, keyed by its name in the registry (`providers/registry.ts`). */
export type ProviderUrls = Readonly<Record<string, string>>;

/** The limits of every provider call (see {@link CallOptions}). */
export type ProviderCallLimits = Omit<CallOptions, 'baseUrl' | 'secret'>;

/** A provider's answer, priced. */
export interface PricedOutcome {
  outcome: CallOutcome;
  costUsd: number;
  /** Tokens the provider counted, every kind together (what the rate limits are settled with). */
  usedTokens: number;
}

/**
 * Calls `provider` at its configured endpoint with the credential's secret injected by its
 * adapter (and scrubbed from the answer by the client), then prices the usage it reports.
 */
export async function callPriced(
  deps: { providerUrls: ProviderUrls; call: ProviderCallLimits; metrics?: EgressMetrics },
  call: { provider: string; operation: string; adapter: ProviderAdapter; prepared: PreparedRequest; secret: string; price: ModelPrice },
): Promise<PricedOutcome> {
  const url = Object.hasOwn(deps.providerUrls, call.provider) ? deps.providerUrls[call.provider] : undefined;
  if (!url) throw new GatewayError('provider_unreachable', `no endpoint is configured for ${call.provider}`);
  const outcome = await callProvider(call.adapter, call.operation, call.prepared, { baseUrl: url, secret: call.secret, ...deps.call });
  const costUsd = costOf(outcome.usage, call.price);
  deps.metrics?.egressSeconds.observe({ provider: call.provider, operation: call.operation }, outcome.latencyMs / 1000);
  deps.metrics?.egressSpendUsd.inc({ provider: call.provider }, costUsd);
  const u = outcome.usage;
  return { outcome, costUsd, usedTokens: u.input_tokens + u.cached_input_tokens + u.cache_write_tokens + u.output_tokens };
}
