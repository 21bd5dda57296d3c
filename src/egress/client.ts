import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { GatewayError } from '../errors/index.js';
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
export async function callProvider(adapter: ProviderAdapter, operation: string, req: PreparedRequest, options: CallOptions): Promise<CallOutcome> {
  const started = performance.now();
  const scrub = (text: string) => (options.secret ? text.split(options.secret).join(REDACTED) : text);
  for (let attempt = 1; ; attempt++) {
    const controller = new AbortController();
    let timedOut: 'connect' | 'idle' | undefined;
    let timer = setTimeout(() => {
      timedOut = 'connect';
      controller.abort();
    }, options.connectTimeoutMs);
    const idle = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = 'idle';
        controller.abort();
      }, options.idleTimeoutMs);
    };
    try {
      let res: IncomingMessage;
      try {
        res = await post(new URL(options.baseUrl.replace(/\/+$/, '') + req.path), {
          'content-type': 'application/json',
          accept: req.stream ? 'text/event-stream' : 'application/json',
          ...adapter.authHeaders(options.secret),
        }, JSON.stringify(req.body), controller.signal);
      } catch (err) {
        if (timedOut && attempt <= options.maxRetries) continue;
        if (timedOut) throw new GatewayError('provider_timeout', `${adapter.name} did not answer within ${options.connectTimeoutMs} ms`);
        if (attempt <= options.maxRetries) {
          await sleep(backoff(attempt));
          continue;
        }
        throw new GatewayError('provider_unreachable', `${adapter.name} could not be reached: ${scrub(String((err as NodeJS.ErrnoException).code ?? (err as Error).message))}`);
      }
      const ttftMs = performance.now() - started;
      idle();
      const status = res.statusCode ?? 502;
      if (status < 200 || status >= 300) {
        const text = scrub(await readAll(res, idle));
        const wait = retryAfterMs(res.headers['retry-after'] ?? null);
        if (RETRYABLE.has(status) && attempt <= options.maxRetries && (wait ?? 0) <= options.maxRetryWaitMs) {
          await sleep(wait ?? backoff(attempt));
          continue;
        }
        throw providerError(adapter.name, status, text, wait);
      }
      let result: ProviderResult;
      if (req.stream) {
        const events = scrubbed(parseSse(tick(res, idle)), scrub);
        result = await adapter.parseStream(operation, events);
      } else {
        const text = scrub(await readAll(res, idle));
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          throw new GatewayError('provider_error', `${adapter.name} answered with something that is not JSON`);
        }
        result = adapter.parse(operation, body);
      }
      return { ...result, attempts: attempt, latencyMs: performance.now() - started, ttftMs };
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      if (timedOut === 'idle') throw new GatewayError('provider_timeout', `${adapter.name} went quiet for ${options.idleTimeoutMs} ms mid-answer`);
      if (timedOut === 'connect') throw new GatewayError('provider_timeout', `${adapter.name} did not answer within ${options.connectTimeoutMs} ms`);
      if (err instanceof SyntaxError) throw new GatewayError('provider_error', `${adapter.name} sent a malformed event`);
      throw new GatewayError('provider_stream_interrupted', `the ${adapter.name} answer broke off`);
    } finally {
      clearTimeout(timer);
    }
  }
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
  if (status === 401 || status === 403) return new GatewayError('provider_auth_failed', `${provider} refused the stored credential`, details);
  if (status >= 400 && status < 500) return new GatewayError('provider_bad_request', `${provider} refused the request: ${message}`, details);
  return new GatewayError('provider_error', `${provider} failed with ${status}: ${message}`, details);
}

async function readAll(res: IncomingMessage, onChunk: () => void): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of tick(res, onChunk)) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function* tick(body: AsyncIterable<Uint8Array>, onChunk: () => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) {
    onChunk();
    yield chunk;
  }
}

async function* scrubbed(events: AsyncIterable<SseEvent>, scrub: (s: string) => string): AsyncGenerator<SseEvent> {
  for await (const e of events) yield { event: e.event, data: scrub(e.data) };
}

/** Retry-After in seconds or as an HTTP date, in ms; undefined when absent or unreadable. */
function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

// Keep-alive connections per protocol: node:http costs a provider call far less CPU than fetch.
const agents = { http: new http.Agent({ keepAlive: true, maxSockets: 512 }), https: new https.Agent({ keepAlive: true, maxSockets: 512 }) };

/** POSTs `body`; resolves with the response once its headers arrive (the body is read by the caller). */
function post(url: URL, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<IncomingMessage> {
  const secure = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const req = (secure ? https : http).request(
      url,
      { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: secure ? agents.https : agents.http, signal },
      resolve,
    );
    req.on('error', reject);
    req.end(body);
  });
}

const backoff = (attempt: number) => Math.random() * Math.min(4000, 250 * 2 ** attempt);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
