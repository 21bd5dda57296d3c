import type { HttpClient } from '../lib/http-client.js';

/** Where an exporter POSTs: the full URL, an optional bearer token, and the bound of one request. */
export interface SinkTarget {
  url: URL;
  token: string | null;
  timeoutMs: number;
}

/** A sink refused a request (non-2xx); `status` is its HTTP status. */
export class SinkRefusedError extends Error {
  constructor(readonly status: number) {
    super(`the sink answered HTTP ${status}`);
    this.name = 'SinkRefusedError';
  }
}

// What a sink may answer; the answer is read only to free the connection.
const MAX_ANSWER_BYTES = 65_536;

/**
 * POSTs one body to a sink through the shared bounded HTTP client and resolves once a 2xx
 * answer is fully read. Anything else (a non-2xx answer, a timeout, a network error) rejects,
 * and the caller retries. The token goes only into the Authorization header, never a message.
 */
export async function postToSink(
  http: HttpClient,
  target: SinkTarget,
  body: Buffer | string,
  headers: Record<string, string>,
  timeoutMs = target.timeoutMs,
): Promise<void> {
  const res = await http.request(target.url, {
    method: 'POST',
    headers: { ...headers, ...(target.token !== null && { authorization: `Bearer ${target.token}` }) },
    body,
    responseTimeoutMs: timeoutMs,
    totalTimeoutMs: timeoutMs,
    maxResponseBytes: MAX_ANSWER_BYTES,
  });
  await res.bytes().catch(() => res.destroy());
  if (res.status < 200 || res.status >= 300) throw new SinkRefusedError(res.status);
}
