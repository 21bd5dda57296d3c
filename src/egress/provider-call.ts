import { GatewayError } from '../errors/index.js';
import type { EgressMetrics } from './metrics.js';
import { type CallOptions, type CallOutcome, callProvider } from './client.js';
import { costOf, type ModelPrice, type Usage } from './pricing.js';
import type { PreparedRequest, ProviderAdapter } from './providers/types.js';
import { type ProviderRelay, type RelayOutcome, relayProvider } from './relay.js';

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
export async function callPriced(deps: PricingDeps, call: PricedCall): Promise<PricedOutcome> {
  const outcome = await callProvider(call.adapter, call.operation, call.prepared, {
    baseUrl: urlOf(deps, call.provider),
    secret: call.secret,
    ...deps.call,
  });
  return { outcome, ...priced(deps, call, outcome) };
}

/** Like {@link callPriced}, relaying the answer to `relay` as it arrives (see `relayProvider`). */
export async function relayPriced(
  deps: PricingDeps,
  call: PricedCall,
  relay: ProviderRelay,
): Promise<{ outcome: RelayOutcome; costUsd: number; usedTokens: number }> {
  const options = { baseUrl: urlOf(deps, call.provider), secret: call.secret, ...deps.call };
  const outcome = await relayProvider(call.adapter, call.operation, call.prepared, options, relay);
  return { outcome, ...priced(deps, call, outcome) };
}

/** What pricing a call reads. */
type PricingDeps = { providerUrls: ProviderUrls; call: ProviderCallLimits; metrics?: EgressMetrics };

/** One provider call to make and price. */
type PricedCall = {
  provider: string;
  operation: string;
  adapter: ProviderAdapter;
  prepared: PreparedRequest;
  secret: string;
  price: ModelPrice;
};

function urlOf(deps: PricingDeps, provider: string): string {
  const url = Object.hasOwn(deps.providerUrls, provider) ? deps.providerUrls[provider] : undefined;
  if (!url) throw new GatewayError('provider_unreachable', `no endpoint is configured for ${provider}`);
  return url;
}

/** The cost of an outcome's usage, counted in the metrics. */
function priced(
  deps: PricingDeps,
  call: PricedCall,
  outcome: { usage: Usage; latencyMs: number },
): { costUsd: number; usedTokens: number } {
  const costUsd = costOf(outcome.usage, call.price);
  deps.metrics?.egressSeconds.observe({ provider: call.provider, operation: call.operation }, outcome.latencyMs / 1000);
  deps.metrics?.egressSpendUsd.inc({ provider: call.provider }, costUsd);
  const u = outcome.usage;
  return { costUsd, usedTokens: u.input_tokens + u.cached_input_tokens + u.cache_write_tokens + u.output_tokens };
}
