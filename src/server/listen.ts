import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { Config } from '../config/index.js';

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
  return new Promise((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, host, () => {
      http.off('error', reject);
      const address = http.address() as AddressInfo;
      resolve({ role, host, port: address.port, close: (graceMs) => closeGracefully(http, graceMs) });
    });
  });
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
