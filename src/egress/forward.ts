import { GatewayError, isGatewayError, type ErrorCode } from '../errors/index.js';
import { FORWARD_TOKEN_HEADER } from '../final-gate/forward-token.js';
import { createHttpClient, type HttpResponse, HttpTimeoutError } from '../lib/http-client.js';
import { answerOf } from './answer.js';
import type { ProviderRelay } from './relay.js';
import { type ApiCallAnswer, type ApiCallReply, EGRESS_PATH, RELAYED_HEADER } from './types.js';

/** The hop from the first gate to the egress role: one POST of the signed body. */
export interface EgressForwarder {
  /** Sends `body` with its forward token; resolves with the egress role's answer. */
  send(body: string, token: string): Promise<ApiCallReply>;
  /**
   * Sends `body` (one that asks for a relay) and passes the egress role's answer on to `relay`
   * as it arrives, once the egress role says it is the provider's answer; a refusal before that
   * is the reply. `broken` is the event that ends the caller's stream if the hop breaks mid-answer.
   */
  relay(requestId: string, body: string, token: string, relay: ProviderRelay, broken: () => string): Promise<ApiCallReply>;
  /** Ends the keep-alive connections. */
  close(): void;
}

type EgressAnswer = ApiCallAnswer | { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } };

/**
 * Forwards calls to API Egress at `egressUrl()` (read per call: it is known only once the
 * roles listen). A call answer passes through as it is; an error envelope (the egress role
 * refused before auditing, e.g. a bad forward token) becomes that GatewayError here; no answer
 * at all is `egress_unavailable`.
 */
export function createEgressForwarder(options: { egressUrl: () => string; requestTimeoutMs: number }): EgressForwarder {
  const client = createHttpClient({ maxSockets: 256 });
  let target = { base: '', url: new URL('http://127.0.0.1') };
  const targetUrl = () => {
    const base = options.egressUrl();
    if (target.base !== base) target = { base, url: new URL(EGRESS_PATH, base) };
    return target.url;
  };
  const unreachable = (err: unknown) => {
    if (isGatewayError(err)) return err;
    const why = err instanceof HttpTimeoutError ? 'timeout' : ((err as NodeJS.ErrnoException).code ?? (err as Error).message);
    return new GatewayError('egress_unavailable', `API Egress cannot be reached: ${why}`);
  };

  const post = (body: string, token: string, signal?: AbortSignal) =>
    client
      .request(targetUrl(), {
        method: 'POST',
        headers: { 'content-type': 'application/json', [FORWARD_TOKEN_HEADER]: token },
        body,
        responseTimeoutMs: options.requestTimeoutMs,
        idleTimeoutMs: options.requestTimeoutMs,
        ...(signal && { signal }),
      })
      .catch((err: unknown) =>
        Promise.reject(signal?.aborted ? new GatewayError('client_closed', 'the caller left before the answer began') : unreachable(err)),
      );

  const send = async (body: string, token: string): Promise<ApiCallReply> => envelope(await post(body, token));

  const relay = async (requestId: string, body: string, token: string, to: ProviderRelay, broken: () => string): Promise<ApiCallReply> => {
    const res = await post(body, token, to.signal);
    if (res.headers[RELAYED_HEADER] !== '1') return envelope(res);
    to.start(res.status, String(res.headers['content-type'] ?? 'application/octet-stream'));
    try {
      for await (const chunk of res.body) await to.write(chunk);
    } catch {
      // The egress role charges and audits what it relayed; the caller's stream ends with an error event.
      if (!to.signal.aborted) await to.write(broken());
    } finally {
      res.destroy();
      to.end();
    }
    return { httpStatus: res.status, body: answerOf(requestId, {}) };
  };

  const envelope = async (res: HttpResponse): Promise<ApiCallReply> => {
    const text = await res.text().catch((err: unknown) => Promise.reject(err instanceof HttpTimeoutError ? unreachable(err) : err));
    // Anything but a call answer or an error envelope (null, a number, an envelope without
    // its error) is as good as no JSON at all.
    let reply: ApiCallReply | GatewayError;
    try {
      const parsed = JSON.parse(text) as EgressAnswer;
      const retry = Number(res.headers['retry-after']);
      reply =
        'request_id' in parsed
          ? { httpStatus: res.status, ...(retry > 0 && { retryAfterS: retry }), body: parsed }
          : new GatewayError(parsed.error.code, `API Egress refused the call: ${parsed.error.message}`, parsed.error.details);
    } catch {
      throw new GatewayError('egress_unavailable', 'API Egress answered with something that is not JSON');
    }
    if (reply instanceof GatewayError) throw reply;
    return reply;
  };

  return { send, relay, close: () => client.close() };
}
