import { createServer, type Server, STATUS_CODES } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type Koa from 'koa';
import type { Config } from '../config/index.js';
import { type ErrorCode, statusOf } from '../errors/index.js';

/** A listening role: its bound address and a way to stop it gracefully. */
export interface Listening {
  role: string;
  host: string;
  port: number;
  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then cuts the rest. */
  close(graceMs: number): Promise<void>;
}

/** Binds one app to host:port (port 0 picks a free one), with request and header time limits. */
export function listen(role: string, app: Koa, host: string, port: number, server: Config['server']): Promise<Listening> {
  const http: Server = createServer(app.callback());
  http.requestTimeout = server.requestTimeoutMs;
  http.headersTimeout = Math.min(server.requestTimeoutMs, 60_000);
  http.keepAliveTimeout = 5_000;
  http.on('clientError', answerClientError);
  return new Promise((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, host, () => {
      http.off('error', reject);
      const address = http.address() as AddressInfo;
      resolve({ role, host, port: address.port, close: (graceMs) => closeGracefully(http, graceMs) });
    });
  });
}

// Requests the HTTP parser refuses never reach Koa; Node would answer them with a bare status
// line. They get the same `{error: {code, message}}` body as every other refusal.
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  // As Node does: never write into a response already under way on this connection.
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent: boolean } })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const [code, message]: [ErrorCode, string] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? ['headers_too_large', 'the request headers are too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? ['request_timeout', 'the request took too long to arrive']
        : ['bad_request', 'the request is not valid HTTP/1.1'];
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${statusOf(code)} ${STATUS_CODES[statusOf(code)]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}

// Keep-alive connections turn idle as their last response ends; sweep them while draining
// so shutdown takes as long as the slowest in-flight request, not the keep-alive timeout.
function closeGracefully(http: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const deadline = setTimeout(() => http.closeAllConnections(), graceMs);
    const sweep = setInterval(() => http.closeIdleConnections(), 50);
    http.close(() => {
      clearTimeout(deadline);
      clearInterval(sweep);
      resolve();
    });
    http.closeIdleConnections();
  });
}
