import { createServer, type Server, STATUS_CODES } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type Koa from 'koa';
import type { Config } from '../config/index.js';
import { type ErrorCode, statusOf } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import { type ListenerTls, MIN_TLS_VERSION, readSecureContext, watchSecureContext } from './tls.js';

/** A listening role: its bound address and a way to stop it gracefully. */
export interface Listening {
  role: string;
  host: string;
  port: number;
  /** `https` when the listener serves TLS. */
  protocol: 'http' | 'https';
  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then cuts the rest. */
  close(graceMs: number): Promise<void>;
}

/** How a listener serves: plain HTTP (`tls` null) or HTTPS from watched certificate files. */
export interface ListenOptions {
  tls: ListenerTls | null;
  /** Where certificate reloads and refused client certificates are logged. */
  logger: Logger;
}

/**
 * Binds one app to host:port (port 0 picks a free one), with request and header time limits,
 * over HTTPS when `options.tls` names a certificate (reloaded when its files change).
 */
export function listen(
  role: string,
  app: Koa,
  host: string,
  port: number,
  server: Config['server'],
  options?: ListenOptions,
): Promise<Listening> {
  const tls = options?.tls ?? null;
  const { http, stopWatching } = tls && options ? createTlsServer(app, tls, options.logger) : { http: createServer(app.callback()) };
  http.requestTimeout = server.requestTimeoutMs;
  http.headersTimeout = Math.min(server.requestTimeoutMs, 60_000);
  http.keepAliveTimeout = 5_000;
  http.on('clientError', answerClientError);
  return new Promise((resolve, reject) => {
    const failed = (err: Error) => {
      stopWatching?.();
      reject(err);
    };
    http.once('error', failed);
    http.listen(port, host, () => {
      http.off('error', failed);
      const address = http.address() as AddressInfo;
      resolve({
        role,
        host,
        port: address.port,
        protocol: tls ? 'https' : 'http',
        close: (graceMs) => {
          stopWatching?.();
          return closeGracefully(http, graceMs);
        },
      });
    });
  });
}

/**
 * An HTTPS server (TLS 1.2 at least) whose certificate follows its files. With client CAs it
 * asks every client for a certificate: a connection that presents one no trusted CA signed is
 * closed before any request is read; one that presents none goes on (the admin and read-only
 * tokens need no certificate), and the `register` policy decides whether a worker must.
 */
function createTlsServer(app: Koa, tls: ListenerTls, logger: Logger): { http: Server; stopWatching: () => void } {
  const log = logger.child({ component: 'tls' });
  const https = createHttpsServer(
    {
      ...readSecureContext(tls),
      minVersion: MIN_TLS_VERSION,
      ...(tls.clientCaFile !== null && { requestCert: true, rejectUnauthorized: false }),
    },
    app.callback(),
  );
  if (tls.clientCaFile !== null) {
    https.on('secureConnection', (socket: TLSSocket) => {
      if (socket.authorized || Object.keys(socket.getPeerCertificate()).length === 0) return;
      log.warn({ remote: socket.remoteAddress, reason: String(socket.authorizationError) }, 'client certificate refused');
      socket.destroy();
    });
  }
  const stopWatching = watchSecureContext(tls, log, (options) => https.setSecureContext(options));
  return { http: https, stopWatching };
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
