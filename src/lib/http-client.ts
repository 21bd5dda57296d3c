import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';

/**
 * One small HTTP client over node:http/https for every outbound call the gateway makes
 * (providers, the hop to API Egress, upstream tool servers, bundle pulls): keep-alive agents per protocol,
 * a bound on every wait, a bound on the answer's size, and the body as a stream. node:http
 * costs a call far less CPU than fetch, which is why this is not fetch.
 *
 * It never maps errors to gateway codes: each caller knows what a timeout or a refused
 * connection means for it. Timeouts and the size cap fail with {@link HttpTimeoutError} and
 * {@link HttpTooLargeError}; a network failure is the socket's own error (its `code` kept);
 * an abort through `signal` is Node's `AbortError`.
 */

/** Which bound ran out: the response headers, a quiet body, or the whole exchange. */
export type TimeoutPhase = 'response' | 'idle' | 'total';

/** A request ran out of time; `phase` says which bound. */
export class HttpTimeoutError extends Error {
  constructor(
    readonly phase: TimeoutPhase,
    readonly timeoutMs: number,
  ) {
    super(`${phase} timeout after ${timeoutMs} ms`);
    this.name = 'HttpTimeoutError';
  }
}

/** An answer grew past the request's `maxResponseBytes`; reading stopped there. */
export class HttpTooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`the answer is larger than ${maxBytes} bytes`);
    this.name = 'HttpTooLargeError';
  }
}

/** One request. Every bound is optional; a missing one does not apply. */
export interface HttpRequest {
  method: string;
  headers: Record<string, string | number>;
  body?: string | Buffer;
  /** Aborts the request, or the reading of its body, from outside. */
  signal?: AbortSignal;
  /** The response headers must arrive within this long of the start (connect included). */
  responseTimeoutMs?: number;
  /** Once the headers are in, the body may go quiet for at most this long between chunks. */
  idleTimeoutMs?: number;
  /** The whole exchange, body included, ends within this long of the start. */
  totalTimeoutMs?: number;
  /** The body is refused past this many bytes. */
  maxResponseBytes?: number;
  /**
   * Follows up to this many redirects (301, 302, 303, 307, 308) the way fetch does: a 303, or a
   * 301/302 to a POST, becomes a GET without a body; `authorization` is not sent to another
   * origin; the total bound spans every hop. Absent or 0: a redirect is the answer.
   */
  maxRedirects?: number;
}

/** An answer whose headers have arrived; its body is read by the caller, at most once. */
export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body as it arrives; the request's idle bound and size cap apply while it is read. */
  body: AsyncIterable<Uint8Array>;
  /** Reads the whole body into one buffer. */
  bytes(): Promise<Buffer>;
  /** Reads the whole body as UTF-8. */
  text(): Promise<string>;
  /** Stops reading and frees the connection. */
  destroy(): void;
}

/** Keep-alive sockets per protocol, shared by every request the client makes. */
export interface HttpClientOptions {
  maxSockets: number;
  /** For https: the CAs trusted (as in node:tls, they replace the system's), and a client certificate to present when asked. */
  tls?: { ca?: string | Buffer | (string | Buffer)[]; cert?: string | Buffer; key?: string | Buffer };
}

/** Sends requests over its own keep-alive agents; `close` ends their sockets. */
export interface HttpClient {
  /** Sends `request` to `url`; resolves once the response headers arrive. */
  request(url: URL, request: HttpRequest): Promise<HttpResponse>;
  close(): void;
}

/** A client with keep-alive agents for http: and https:. */
export function createHttpClient(options: HttpClientOptions): HttpClient {
  const agents = {
    http: new http.Agent({ keepAlive: true, maxSockets: options.maxSockets }),
    https: new https.Agent({ keepAlive: true, maxSockets: options.maxSockets, ...options.tls }),
  };
  return {
    request: (url, request) => {
      const agentFor = (to: URL) => (to.protocol === 'https:' ? agents.https : agents.http);
      // A request that follows no redirects takes the direct path, without the loop's extra await.
      return request.maxRedirects ? follow(url, request, agentFor) : send(url, request, agentFor(url));
    },
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Sends `request`, then each redirect it is allowed to follow; resolves with the last answer. */
async function follow(url: URL, request: HttpRequest, agentFor: (url: URL) => http.Agent): Promise<HttpResponse> {
  const deadline = request.totalTimeoutMs === undefined ? undefined : Date.now() + request.totalTimeoutMs;
  let hop = { url, request };
  for (let redirects = 0; ; redirects++) {
    const res = await send(hop.url, hop.request, agentFor(hop.url));
    const location = res.headers.location;
    if (!REDIRECTS.has(res.status) || !location || redirects >= (request.maxRedirects ?? 0)) return res;
    res.destroy();
    hop = redirected(hop.url, hop.request, res.status, new URL(location, hop.url), deadline);
  }
}

/** The request a redirect to `to` asks for. */
function redirected(
  from: URL,
  request: HttpRequest,
  status: number,
  to: URL,
  deadline: number | undefined,
): { url: URL; request: HttpRequest } {
  if (to.protocol !== 'http:' && to.protocol !== 'https:') throw new Error(`redirect to an unsupported URL scheme ${to.protocol}`);
  const toGet = status === 303 ? request.method !== 'HEAD' : (status === 301 || status === 302) && request.method === 'POST';
  const headers = { ...request.headers };
  for (const name of Object.keys(headers)) {
    const lower = name.toLowerCase();
    if ((to.origin !== from.origin && lower === 'authorization') || (toGet && (lower === 'content-type' || lower === 'content-length')))
      delete headers[name];
  }
  const next: HttpRequest = { ...request, headers, ...(toGet && { method: 'GET', body: '' }) };
  if (deadline !== undefined) next.totalTimeoutMs = Math.max(0, deadline - Date.now());
  return { url: to, request: next };
}

/** The timers of one exchange: each destroys whatever is in flight with its timeout error. */
function bounds(request: HttpRequest, fail: (err: Error) => void) {
  const timers: { response?: NodeJS.Timeout; idle?: NodeJS.Timeout; total?: NodeJS.Timeout } = {};
  const arm = (phase: TimeoutPhase, ms: number | undefined) => {
    clearTimeout(timers[phase]);
    if (ms !== undefined) timers[phase] = setTimeout(() => fail(new HttpTimeoutError(phase, ms)), ms);
  };
  arm('response', request.responseTimeoutMs);
  arm('total', request.totalTimeoutMs);
  return {
    /** Headers are in: the response bound ends, the idle bound starts. */
    headers() {
      clearTimeout(timers.response);
      arm('idle', request.idleTimeoutMs);
    },
    chunk: () => arm('idle', request.idleTimeoutMs),
    clear() {
      clearTimeout(timers.response);
      clearTimeout(timers.idle);
      clearTimeout(timers.total);
    },
  };
}

/**
 * Sends one request. A reset on a reused keep-alive socket before any answer is the race of
 * the server closing an idle connection as the request left: the server never read it, so it
 * is sent once more on a fresh socket (as Node's documentation advises).
 */
function send(url: URL, request: HttpRequest, agent: http.Agent, retried = false): Promise<HttpResponse> {
  return sendOnce(url, request, agent).catch((err: NodeJS.ErrnoException & { reusedSocket?: boolean }) => {
    if (retried || !err.reusedSocket || err.code !== 'ECONNRESET' || request.signal?.aborted) throw err;
    return send(url, request, agent, true);
  });
}

function sendOnce(url: URL, request: HttpRequest, agent: http.Agent): Promise<HttpResponse> {
  const body = request.body ?? '';
  return new Promise((resolve, reject) => {
    let res: IncomingMessage | undefined;
    // Before the headers the request is destroyed (its 'error' rejects); after them the
    // response is, so the error surfaces where the body is being read.
    const timers = bounds(request, (err) => (res ? res.destroy(err) : req.destroy(err)));
    const req = (agent instanceof https.Agent ? https : http).request(
      url,
      {
        method: request.method,
        headers: { ...request.headers, 'content-length': Buffer.byteLength(body) },
        agent,
        ...(request.signal && { signal: request.signal }),
      },
      (incoming) => {
        res = incoming;
        timers.headers();
        incoming.once('close', timers.clear);
        // A bound that runs out before anyone reads the body must not become an unhandled
        // 'error'; a reader of the body still sees the error through its own listener.
        incoming.on('error', () => undefined);
        resolve(response(incoming, request, timers.chunk));
      },
    );
    req.on('error', (err) => {
      timers.clear();
      reject(res === undefined && req.reusedSocket ? Object.assign(err, { reusedSocket: true }) : err);
    });
    req.end(body);
  });
}

function response(res: IncomingMessage, request: HttpRequest, onChunk: () => void): HttpResponse {
  const body = limited(res, request.maxResponseBytes, onChunk);
  const bytes = async () => {
    const chunks: Uint8Array[] = [];
    for await (const chunk of body) chunks.push(chunk);
    return Buffer.concat(chunks);
  };
  return {
    status: res.statusCode ?? 502,
    headers: res.headers,
    body,
    bytes,
    text: async () => (await bytes()).toString('utf8'),
    destroy: () => res.destroy(),
  };
}

/** The body's chunks, each one re-arming the idle bound, refused past `maxBytes`. */
async function* limited(res: IncomingMessage, maxBytes: number | undefined, onChunk: () => void): AsyncGenerator<Uint8Array> {
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    onChunk();
    size += chunk.length;
    if (maxBytes !== undefined && size > maxBytes) {
      res.destroy();
      throw new HttpTooLargeError(maxBytes);
    }
    yield chunk;
  }
}
