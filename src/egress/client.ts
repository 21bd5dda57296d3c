import { GatewayError } from '../errors/index.js';
import { createHttpClient, type HttpResponse, HttpTimeoutError } from '../lib/http-client.js';
import type { PreparedRequest, ProviderAdapter, ProviderResult, SseEvent } from './providers/types.js';
import { parseSse } from './providers/sse.js';

/** How one provider call is made. */
export interface CallOptions {
  baseUrl: string;
  secret: string;
  /** No response headers within this long: the attempt fails (and may be retried). */
  connectTimeoutMs: number;
  /** No bytes of the body (or stream) for this long: the call fails. */
  idleTimeoutMs: number;
  /** Extra attempts after a 429 / 502 / 503 / 504 / 529 or a refused connection. */
  maxRetries: number;
  /** The longest a Retry-After is honoured before giving up on the retry. */
  maxRetryWaitMs: number;
}

/** A provider result with the timings the audit records. */
export interface CallOutcome extends ProviderResult {
  attempts: number;
  latencyMs: number;
  /** Time to the first byte of the answer (the first event when streaming). */
  ttftMs: number;
}

const RETRYABLE = new Set([429, 502, 503, 504, 529]);
const REDACTED = '[REDACTED]';

/**
 * Calls a provider with the credential injected server side. Every byte of the answer is
 * scrubbed of the credential before anything parses it, so a provider that echoes the key
 * cannot leak it. Retries only what the provider refused before doing any work.
 */
export async function callProvider(
  adapter: ProviderAdapter,
  operation: string,
  req: PreparedRequest,
  options: CallOptions,
): Promise<CallOutcome> {
  const started = performance.now();
  const { res, attempts, ttftMs, scrub } = await connect(adapter, req, options);
  try {
    const result = await readResult(adapter, operation, req, res, scrub);
    return { ...result, attempts, latencyMs: performance.now() - started, ttftMs };
  } catch (err) {
    throw answerError(adapter.name, err, options);
  } finally {
    res.destroy();
  }
}

/** A provider's 2xx answer whose headers are in, with what the attempts took. */
export interface Connected {
  res: HttpResponse;
  attempts: number;
  /** Time to the answer's headers, ms. */
  ttftMs: number;
  /** Replaces the credential in provider text with a marker. */
  scrub: (text: string) => string;
}

/**
 * Sends the request until a 2xx answer's headers arrive, retrying only what the provider
 * refused before doing any work; a refusal becomes its GatewayError. With `signal`, an abort
 * stops the attempts at once (Node's AbortError, not retried).
 */
export async function connect(
  adapter: ProviderAdapter,
  req: PreparedRequest,
  options: CallOptions,
  signal?: AbortSignal,
): Promise<Connected> {
  const started = performance.now();
  const scrub = (text: string) => (options.secret ? text.split(options.secret).join(REDACTED) : text);
  for (let attempt = 1; ; attempt++) {
    let res: HttpResponse;
    try {
      res = await send(adapter, req, options, signal);
    } catch (err) {
      if (signal?.aborted) throw err;
      const timedOut = err instanceof HttpTimeoutError;
      if (timedOut && attempt <= options.maxRetries) continue;
      if (timedOut) throw new GatewayError('provider_timeout', `${adapter.name} did not answer within ${options.connectTimeoutMs} ms`);
      if (attempt <= options.maxRetries) {
        await sleep(backoff(attempt));
        continue;
      }
      throw new GatewayError(
        'provider_unreachable',
        `${adapter.name} could not be reached: ${scrub(String((err as NodeJS.ErrnoException).code ?? (err as Error).message))}`,
      );
    }
    const ttftMs = performance.now() - started;
    if (res.status >= 200 && res.status < 300) return { res, attempts: attempt, ttftMs, scrub };
    try {
      const text = scrub(await res.text());
      const wait = retryAfterMs(res.headers['retry-after'] ?? null);
      if (RETRYABLE.has(res.status) && attempt <= options.maxRetries && (wait ?? 0) <= options.maxRetryWaitMs && !signal?.aborted) {
        await sleep(wait ?? backoff(attempt));
        continue;
      }
      throw providerError(adapter.name, res.status, text, wait);
    } catch (err) {
      throw answerError(adapter.name, err, options);
    } finally {
      res.destroy();
    }
  }
}

/** POSTs the prepared request; resolves once the answer's headers arrive. */
function send(adapter: ProviderAdapter, req: PreparedRequest, options: CallOptions, signal?: AbortSignal): Promise<HttpResponse> {
  return client.request(new URL(options.baseUrl.replace(/\/+$/, '') + req.path), {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: req.stream ? 'text/event-stream' : 'application/json',
      ...adapter.authHeaders(options.secret),
    },
    body: JSON.stringify(req.body),
    responseTimeoutMs: options.connectTimeoutMs,
    idleTimeoutMs: options.idleTimeoutMs,
    ...(signal && { signal }),
  });
}

/** A 2xx answer, plain or streamed, parsed by the adapter from its scrubbed bytes. */
async function readResult(
  adapter: ProviderAdapter,
  operation: string,
  req: PreparedRequest,
  res: HttpResponse,
  scrub: (s: string) => string,
): Promise<ProviderResult> {
  if (req.stream) return adapter.parseStream(operation, readToEnd(scrubbed(parseSse(res.body), scrub), res));
  const text = scrub(await res.text());
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new GatewayError('provider_error', `${adapter.name} answered with something that is not JSON`);
  }
  return adapter.parse(operation, body);
}

/** What went wrong once the headers were in, as the error the call fails with. */
export function answerError(provider: string, err: unknown, options: CallOptions): GatewayError {
  if (err instanceof GatewayError) return err;
  if (err instanceof HttpTimeoutError && err.phase === 'idle')
    return new GatewayError('provider_timeout', `${provider} went quiet for ${options.idleTimeoutMs} ms mid-answer`);
  if (err instanceof HttpTimeoutError)
    return new GatewayError('provider_timeout', `${provider} did not answer within ${options.connectTimeoutMs} ms`);
  if (err instanceof SyntaxError) return new GatewayError('provider_error', `${provider} sent a malformed event`);
  return new GatewayError('provider_stream_interrupted', `the ${provider} answer broke off`);
}

function providerError(provider: string, status: number, text: string, retryAfterMs: number | undefined): GatewayError {
  let message = text.slice(0, 500);
  try {
    const e = (JSON.parse(text) as { error?: { message?: string } }).error;
    if (e?.message) message = String(e.message).slice(0, 500);
  } catch {
    // not JSON: the raw (scrubbed) text stands
  }
  const details = { provider_status: status, ...(retryAfterMs !== undefined && { retry_after_s: Math.ceil(retryAfterMs / 1000) }) };
  if (status === 429) return new GatewayError('provider_rate_limited', `${provider} rate limited the call: ${message}`, details);
  if (status === 401 || status === 403)
    return new GatewayError('provider_auth_failed', `${provider} refused the stored credential`, details);
  if (status >= 400 && status < 500)
    return new GatewayError('provider_bad_request', `${provider} refused the request: ${message}`, details);
  return new GatewayError('provider_error', `${provider} failed with ${status}: ${message}`, details);
}

async function* scrubbed(events: AsyncIterable<SseEvent>, scrub: (s: string) => string): AsyncGenerator<SseEvent> {
  for await (const e of events) yield { event: e.event, data: scrub(e.data) };
}

/** How long the rest of a stream is read after the adapter has stopped at its terminator. */
export const TAIL_GRACE_MS = 250;

/**
 * The events of a stream whose adapter stops reading at the terminator (`[DONE]`,
 * `message_stop`): what follows it, normally only the end of the body, is still read (for at
 * most TAIL_GRACE_MS), so the keep-alive connection goes back to the pool. Stopping a response
 * before its end makes Node tear the connection down, and every streamed call would open a new one.
 */
function readToEnd<T>(events: AsyncIterable<T>, res: HttpResponse): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const inner = events[Symbol.asyncIterator]();
      return {
        next: () => inner.next(),
        async return() {
          const timer = setTimeout(() => res.destroy(), TAIL_GRACE_MS);
          try {
            while (!(await inner.next()).done);
          } catch {
            // The answer is already in: a tail that breaks off changes nothing.
          } finally {
            clearTimeout(timer);
          }
          return { done: true, value: undefined };
        },
      };
    },
  };
}

/** Retry-After in seconds or as an HTTP date, in ms; undefined when absent or unreadable. */
function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

// Keep-alive connections shared by every provider call.
const client = createHttpClient({ maxSockets: 512 });

const backoff = (attempt: number) => Math.random() * Math.min(4000, 250 * 2 ** attempt);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
