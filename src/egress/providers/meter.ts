import type { Usage } from '../pricing.js';
import type { RawSseEvent } from './sse.js';
import type { PreparedRequest, StreamFailure, StreamMeter } from './types.js';

/** What a meter knows of its stream so far (see {@link StreamMeter}). */
export interface MeterState {
  complete: boolean;
  failure: StreamFailure | undefined;
  model: string;
}

/** A {@link StreamMeter} over `state`, which `relay` keeps up to date. */
export function meterOf(state: MeterState, relay: (e: RawSseEvent) => string | null, usage: () => Usage): StreamMeter {
  return {
    relay,
    get complete() {
      return state.complete;
    },
    get failure() {
      return state.failure;
    },
    get model() {
      return state.model;
    },
    usage,
  };
}

/** What a stream has delivered so far, and the most it can have cost. */
export interface DeliveredOutput {
  /** Counts text passed on to the caller (content, tool arguments, thinking). */
  add(text: unknown): void;
  /**
   * The most the stream can have cost if it stops now: the input the provider reported (else
   * the request's upper bound, as reserved) plus the output delivered, each UTF-8 byte counted
   * as one token (a token is at least one byte), never less than what the provider has
   * reported so far, and never more than the output cap.
   */
  bound(reported?: Partial<Usage>): Usage;
}

/** Counts the output of one relayed stream of `prepared`. */
export function deliveredOutput(prepared: PreparedRequest): DeliveredOutput {
  let bytes = 0;
  return {
    add(text) {
      if (typeof text === 'string' && text !== '') bytes += Buffer.byteLength(text, 'utf8');
    },
    bound(reported = {}) {
      const inputKnown = reported.input_tokens !== undefined;
      return {
        input_tokens: inputKnown ? reported.input_tokens! : prepared.inputChars,
        cached_input_tokens: inputKnown ? (reported.cached_input_tokens ?? 0) : 0,
        cache_write_tokens: inputKnown ? (reported.cache_write_tokens ?? 0) : 0,
        output_tokens: Math.min(prepared.maxOutputTokens, Math.max(bytes, reported.output_tokens ?? 0)),
      };
    },
  };
}

/** A provider event's JSON: whatever the provider sent, so every field is read with a check. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type EventJson = Record<string, any>;

/** The JSON of an event's data, or undefined when it is not JSON (the stream is passed on as it is). */
export function jsonOf(data: string): EventJson | undefined {
  try {
    const v = JSON.parse(data) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as EventJson) : undefined;
  } catch {
    return undefined;
  }
}
