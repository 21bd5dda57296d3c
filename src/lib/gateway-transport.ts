import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { HttpClientOptions } from './http-client.js';
import { errorMessage } from './error-message.js';

/**
 * How a client of the gateway (the reference worker, a target service's final gate) reaches
 * it: which CAs it trusts beyond the system's, the client certificate it presents, and whether
 * plain HTTP to another host is allowed. Read from `CYNODE_CA_FILE`, `CYNODE_CLIENT_CERT_FILE`,
 * `CYNODE_CLIENT_KEY_FILE` and `CYNODE_ALLOW_INSECURE` by whoever reads the environment.
 */
export interface GatewayTransport {
  /** PEM CAs the gateway's certificate may chain to (in addition to the system's). */
  ca?: Buffer;
  /** PEM client certificate and key presented to a control plane that asks for one. */
  cert?: Buffer;
  key?: Buffer;
  /** Plain `http://` to a host that is not loopback is refused unless this is true. */
  allowInsecure: boolean;
}

/** The files of a {@link GatewayTransport}, by the name of the variable each came from. */
export interface GatewayTransportFiles {
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  allowInsecure?: boolean;
}

/** A transport setting that cannot be used; the message names the variable. */
export class GatewayTransportError extends Error {}

/** Reads the CA and client certificate files; a file that cannot be read, or a certificate without its key, is named. */
export function readGatewayTransport(files: GatewayTransportFiles): GatewayTransport {
  const read = (file: string | undefined, name: string) => {
    if (!file) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new GatewayTransportError(`${name} (${file}) cannot be read: ${errorMessage(err)}`);
    }
  };
  if (!files.certFile !== !files.keyFile) {
    throw new GatewayTransportError('CYNODE_CLIENT_CERT_FILE and CYNODE_CLIENT_KEY_FILE must be set together');
  }
  const ca = read(files.caFile, 'CYNODE_CA_FILE');
  const cert = read(files.certFile, 'CYNODE_CLIENT_CERT_FILE');
  const key = read(files.keyFile, 'CYNODE_CLIENT_KEY_FILE');
  return { ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }), allowInsecure: files.allowInsecure === true };
}

/** Whether `hostname` (as `URL.hostname` spells it) names this machine: localhost, 127.0.0.0/8 or ::1. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost') || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/**
 * Refuses plain `http://` to a gateway that is not on this machine, unless `allowInsecure`:
 * PSKs, worker tokens and job payloads would cross the network in the clear. Checked before
 * any connection is made. `name` is the setting the URL came from, for the message.
 */
export function checkGatewayUrl(url: string, allowInsecure: boolean, name: string): void {
  const parsed = new URL(url);
  if (parsed.protocol === 'https:' || allowInsecure || isLoopbackHost(parsed.hostname)) return;
  throw new GatewayTransportError(
    `${name} is plain http:// to ${parsed.hostname}, which is not loopback: use https:// (with CYNODE_CA_FILE for a private CA), or set CYNODE_ALLOW_INSECURE=true on a network you trust`,
  );
}

/** The https agent settings of a transport: the system's CAs plus its own, and its client certificate. */
export function httpTlsOf(transport: GatewayTransport): NonNullable<HttpClientOptions['tls']> {
  return {
    ...(transport.ca && { ca: [...rootCertificates, transport.ca] }),
    ...(transport.cert && { cert: transport.cert }),
    ...(transport.key && { key: transport.key }),
  };
}
