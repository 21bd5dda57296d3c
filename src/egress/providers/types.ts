import type { Usage } from '../pricing.js';
import type { RawSseEvent } from './sse.js';

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
  /**
   * The stream's usage report was asked for by the gateway, not by the caller: a relayed stream
   * drops it (and the empty usage fields it adds to every chunk) so the caller sees the stream
   * it asked for.
   */
  usageForced?: boolean;
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

/** An error as a provider's own stream would carry it, in that provider's shape. */
export interface StreamFailure {
  code: string;
  message: string;
}

/**
 * Follows a stream relayed to the caller event by event: what to pass on, the usage it
 * reports, and what the output delivered so far costs at most if the stream stops early.
 */
export interface StreamMeter {
  /**
   * One event as the provider sent it (already scrubbed of the credential): the text to pass
   * on, or null to drop it. A provider's own error event is passed on and marks the stream failed.
   */
  relay(e: RawSseEvent): string | null;
  /** The stream reached the provider's terminator (`[DONE]`, `message_stop`, `response.completed`). */
  readonly complete: boolean;
  /** The provider sent an error event: what it said. */
  readonly failure: StreamFailure | undefined;
  /** The model the provider says it served ('' until it says). */
  readonly model: string;
  /**
   * The usage to charge: the provider's final report when the stream completed, otherwise an
   * upper bound of the input plus the output delivered so far (never less than what reached the caller).
   */
  usage(): Usage;
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
  /** Follows a stream relayed as it arrives (the drop-in model APIs). */
  meter(operation: string, prepared: PreparedRequest): StreamMeter;
  /** The provider's own SSE error event for a failure of the gateway's mid-stream (the caller's SDK raises it). */
  streamError(operation: string, failure: StreamFailure): string;
}
