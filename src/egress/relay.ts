import { GatewayError } from '../errors/index.js';
import type { HttpResponse } from '../lib/http-client.js';
import { answerError, type CallOptions, connect, TAIL_GRACE_MS } from './client.js';
import type { Usage } from './pricing.js';
import { sseEvents } from './providers/sse.js';
import type { PreparedRequest, ProviderAdapter, StreamFailure } from './providers/types.js';

/**
 * Where a relayed answer goes: the caller's own HTTP response, written as the provider's
 * answer arrives (the drop-in model APIs). Nothing is written before `start`, so a call
 * refused or failed before the provider answered is still answered as an error.
 */
export interface ProviderRelay {
  /** Aborted once the caller has gone: the provider call is aborted with it. */
  readonly signal: AbortSignal;
  /** The answer begins, with the provider's status and content type; from here the answer is the provider's. */
  start(status: number, contentType: string): void;
  /** Passes bytes on; resolves once the socket has taken them (at once when the caller has gone). */
  write(chunk: string | Uint8Array): Promise<void>;
  end(): void;
}

/** How a relayed call ended, and what it is charged for. */
export interface RelayOutcome {
  /** The provider's final usage when the answer completed; otherwise the upper bound of what was delivered. */
  usage: Usage;
  model: string;
  attempts: number;
  latencyMs: number;
  ttftMs: number;
  /** How the answer ended: whole, broken off by the provider or the gateway, or left by the caller. */
  ending: 'complete' | 'failed' | 'aborted';
  /** What broke the answer off, when it did not complete. */
  failure?: StreamFailure;
}

/** The usage of a call that stopped before the provider answered anything: the input, as reserved. */
const inputOnly = (prepared: PreparedRequest): Usage => ({
  input_tokens: prepared.inputChars,
  cached_input_tokens: 0,
  cache_write_tokens: 0,
  output_tokens: 0,
});

/**
 * Calls the provider and relays its answer to `relay` as it arrives: a plain answer once it
 * is read (scrubbed and parsed first, so a broken one is still an error), a stream event by
 * event, each scrubbed of the credential and passed through the adapter's meter (which may
 * drop what the gateway added). A refusal before the answer throws its GatewayError, as
 * `callProvider` does. Once the answer has begun nothing throws: a break mid-stream ends the
 * stream with the provider's own error event, and the caller leaving aborts the provider
 * request; either way the outcome says what was delivered, so it is charged.
 */
export async function relayProvider(
  adapter: ProviderAdapter,
  operation: string,
  prepared: PreparedRequest,
  options: CallOptions,
  relay: ProviderRelay,
): Promise<RelayOutcome> {
  const started = performance.now();
  let connected;
  try {
    connected = await connect(adapter, prepared, options, relay.signal);
  } catch (err) {
    if (!relay.signal.aborted) throw err;
    // The caller left while the request was out: the provider may have read it.
    return { usage: inputOnly(prepared), model: '', attempts: 1, latencyMs: performance.now() - started, ttftMs: 0, ending: 'aborted' };
  }
  const { res, attempts, ttftMs, scrub } = connected;
  const done = (o: Omit<RelayOutcome, 'attempts' | 'latencyMs' | 'ttftMs'>): RelayOutcome => ({
    ...o,
    attempts,
    latencyMs: performance.now() - started,
    ttftMs,
  });
  try {
    if (!prepared.stream) {
      const text = scrub(await res.text().catch((err: unknown) => Promise.reject(answerError(adapter.name, err, options))));
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new GatewayError('provider_error', `${adapter.name} answered with something that is not JSON`);
      }
      const { usage, model } = adapter.parse(operation, body);
      relay.start(res.status, String(res.headers['content-type'] ?? 'application/json'));
      await relay.write(text);
      relay.end();
      return done({ usage, model, ending: 'complete' });
    }
    return done(await relayStream(adapter, operation, prepared, res, scrub, relay, options));
  } finally {
    res.destroy();
  }
}

/** Relays a stream whose headers are in; never throws (the answer has begun). */
async function relayStream(
  adapter: ProviderAdapter,
  operation: string,
  prepared: PreparedRequest,
  res: HttpResponse,
  scrub: (s: string) => string,
  relay: ProviderRelay,
  options: CallOptions,
): Promise<Omit<RelayOutcome, 'attempts' | 'latencyMs' | 'ttftMs'>> {
  const meter = adapter.meter(operation, prepared);
  relay.start(200, 'text/event-stream; charset=utf-8');
  let failure: StreamFailure | undefined;
  let tail: NodeJS.Timeout | undefined;
  try {
    for await (const e of sseEvents(res.body)) {
      if (tail) continue;
      const out = meter.relay({ ...e, raw: scrub(e.raw), data: scrub(e.data) });
      if (out !== null) await relay.write(out);
      // The answer is whole: the caller's stream ends now; the provider's tail is read for a
      // moment more, so its keep-alive connection goes back to the pool (see readToEnd).
      if (meter.complete) {
        relay.end();
        tail = setTimeout(() => res.destroy(), TAIL_GRACE_MS);
      }
    }
    if (meter.failure) failure = meter.failure;
    else if (!meter.complete) failure = { code: 'provider_stream_interrupted', message: `the ${adapter.name} stream ended before its end` };
  } catch (err) {
    if (meter.complete) return { usage: meter.usage(), model: meter.model, ending: 'complete' };
    if (relay.signal.aborted) {
      relay.end();
      return { usage: meter.usage(), model: meter.model, ending: 'aborted' };
    }
    const e = answerError(adapter.name, err, options);
    failure = { code: e.code, message: e.message };
  } finally {
    clearTimeout(tail);
  }
  // The provider's own error event is already through; one of the gateway's is written here.
  if (failure && !meter.failure) await relay.write(adapter.streamError(operation, failure));
  relay.end();
  if (relay.signal.aborted && !meter.complete) return { usage: meter.usage(), model: meter.model, ending: 'aborted' };
  return { usage: meter.usage(), model: meter.model, ending: failure ? 'failed' : 'complete', ...(failure && { failure }) };
}
