import type { Usage } from '../pricing.js';

/** A provider request ready to send: validated, capped, with what reserving its cost needs. */
export interface PreparedRequest {
  path: string;
  body: Record<string, unknown>;
  stream: boolean;
  /** The model asked for. */
  model: string;
  /** Upper bound of the input's size in tokens (characters of its JSON form). */
  inputChars: number;
  /** The output cap enforced on the request. */
  maxOutputTokens: number;
}

/** What a provider call produced, normalised across providers. */
export interface ProviderResult {
  /** The provider's answer (assembled from the stream when streaming). */
  result: unknown;
  usage: Usage;
  /** The model the provider says it served. */
  model: string;
}

/** One server-sent event. */
export interface SseEvent {
  event: string | undefined;
  data: string;
}

/**
 * One external model provider, behind the one registry: adding an OpenAI-compatible
 * provider is one file (`openAiCompatible('<name>')`), one line in `registry.ts`, its models
 * in the bundle's price table, and its endpoint in `providerUrls`.
 */
export interface ProviderAdapter {
  name: string;
  operations: readonly string[];
  /** Validates `params` for `operation` and builds the request (output capped, usage forced in streams). */
  prepare(operation: string, params: unknown): PreparedRequest;
  /** The headers that carry the credential (injected here, server side, never by the caller). */
  authHeaders(secret: string): Record<string, string>;
  parse(operation: string, body: unknown): ProviderResult;
  /** Assembles a streamed answer and its usage from the provider's events. */
  parseStream(operation: string, events: AsyncIterable<SseEvent>): Promise<ProviderResult>;
}
