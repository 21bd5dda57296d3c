import { GatewayError } from '../../errors/index.js';
import { anthropic } from './anthropic.js';
import { openai } from './openai.js';
import type { ProviderAdapter } from './types.js';

/**
 * Every provider the gateway can call: one line each, keyed by the name callers use in
 * `api.call`, credentials are stored under, `providerUrls` is keyed by and the price table
 * lists models for. The key is the adapter's `name`. Nothing else in API Egress names a provider.
 */
export const PROVIDERS: Readonly<Record<string, ProviderAdapter>> = {
  openai,
  anthropic,
};

/** The adapter for `provider`, refusing an unknown provider or operation. */
export function adapterFor(provider: string, operation: string): ProviderAdapter {
  const adapter = Object.prototype.hasOwnProperty.call(PROVIDERS, provider) ? PROVIDERS[provider] : undefined;
  if (!adapter) throw new GatewayError('bad_request', `unknown provider '${provider.slice(0, 64)}'`);
  if (!adapter.operations.includes(operation))
    throw new GatewayError('bad_request', `${provider} has no operation '${operation.slice(0, 64)}'`);
  return adapter;
}
