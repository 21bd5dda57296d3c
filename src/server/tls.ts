import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Socket } from 'node:net';
import { type PeerCertificate, type SecureContextOptions, type TLSSocket } from 'node:tls';
import type { Config } from '../config/index.js';
import { errorMessage } from '../lib/error-message.js';
import { StartupError } from '../lib/startup-error.js';
import type { Logger } from '../logging/index.js';

/** The TLS settings of one listener: its certificate files, and the client CAs when it asks for client certificates. */
export interface ListenerTls {
  certFile: string;
  keyFile: string;
  /** Set on the role that asks for client certificates (the control plane, for the Worker API). */
  clientCaFile: string | null;
}

/** The oldest protocol any listener speaks: TLS 1.0 and 1.1 are refused in the handshake. */
export const MIN_TLS_VERSION = 'TLSv1.2';

/** How often the certificate files are looked at for a change (a stat, not a read). */
const WATCH_INTERVAL_MS = 500;

/** The TLS settings of `role`, or null for plain HTTP: only the control plane asks for client certificates. */
export function listenerTls(role: string, tls: Config['server']['tls']): ListenerTls | null {
  if (tls.certFile === null || tls.keyFile === null) return null;
  return { certFile: tls.certFile, keyFile: tls.keyFile, clientCaFile: role === 'control' ? tls.clientCaFile : null };
}

/** Reads the certificate, key and client CAs into the options of a secure context; a missing file stops the start, naming it. */
export function readSecureContext(tls: ListenerTls): SecureContextOptions {
  const read = (file: string, key: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new StartupError(`cannot read '${key}' (${file}): ${errorMessage(err)}`);
    }
  };
  return {
    cert: read(tls.certFile, 'server.tls.certFile'),
    key: read(tls.keyFile, 'server.tls.keyFile'),
    ...(tls.clientCaFile !== null && { ca: read(tls.clientCaFile, 'server.tls.clientCaFile') }),
  };
}

/**
 * Watches the certificate files and hands each new pair to `apply` (e.g. `server.setSecureContext`):
 * new connections get the new certificate, open ones keep theirs. A file replaced half way (a
 * key that does not match its certificate yet) is logged and the old context kept until the
 * next change. Returns the stop.
 */
export function watchSecureContext(tls: ListenerTls, log: Logger, apply: (options: SecureContextOptions) => void): () => void {
  const files = [tls.certFile, tls.keyFile, ...(tls.clientCaFile !== null ? [tls.clientCaFile] : [])];
  const reload = (current: { mtimeMs: number; size: number }, previous: { mtimeMs: number; size: number }) => {
    if (current.mtimeMs === previous.mtimeMs && current.size === previous.size) return;
    try {
      apply(readSecureContext(tls));
      log.info({ certFile: tls.certFile }, 'TLS certificate reloaded');
    } catch (err) {
      log.error({ err: errorMessage(err), certFile: tls.certFile }, 'TLS certificate change not applied; the previous one stays in use');
    }
  };
  for (const file of files) watchFile(file, { interval: WATCH_INTERVAL_MS, persistent: false }, reload);
  return () => files.forEach((file) => unwatchFile(file, reload));
}

/**
 * A verified client certificate as the `register` policy sees it (`input.subject.tls`): the
 * subject's common name and attributes, the subject alternative names by type, the issuer,
 * serial, SHA-256 fingerprint and expiry. See docs/policy-input.md.
 */
export interface TlsIdentity {
  common_name: string | null;
  subject: Record<string, string>;
  issuer: Record<string, string>;
  dns_names: string[];
  uris: string[];
  ip_addresses: string[];
  emails: string[];
  serial_number: string;
  fingerprint_sha256: string;
  not_after: string;
}

/**
 * The identity of the client certificate the connection was verified with, or undefined when
 * the connection is plain HTTP, presented none, or presented one no trusted CA signed (the
 * listener already closed those).
 */
export function peerIdentity(socket: Socket): TlsIdentity | undefined {
  const tlsSocket = socket as Partial<TLSSocket>;
  if (typeof tlsSocket.getPeerCertificate !== 'function' || tlsSocket.authorized !== true) return undefined;
  const cert = tlsSocket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return undefined;
  const sans = subjectAltNames(cert.subjectaltname);
  const cn = firstOf(cert.subject?.CN);
  return {
    common_name: cn ?? null,
    subject: flatten(cert.subject),
    issuer: flatten(cert.issuer),
    ...sans,
    serial_number: cert.serialNumber,
    fingerprint_sha256: cert.fingerprint256,
    not_after: isoDate(cert.valid_to),
  };
}

/** Node joins the names as `DNS:a, URI:b, IP Address:c, email:d` (values with commas are quoted). */
function subjectAltNames(joined: string | undefined): Pick<TlsIdentity, 'dns_names' | 'uris' | 'ip_addresses' | 'emails'> {
  const out = { dns_names: [] as string[], uris: [] as string[], ip_addresses: [] as string[], emails: [] as string[] };
  const targets: Record<string, string[]> = { DNS: out.dns_names, URI: out.uris, 'IP Address': out.ip_addresses, email: out.emails };
  for (const match of (joined ?? '').matchAll(/(DNS|URI|IP Address|email):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g)) {
    const raw = match[2]!;
    const value = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
    targets[match[1]!]!.push(value);
  }
  return out;
}

/** The certificate's distinguished-name attributes, each with its first value. */
function flatten(name: PeerCertificate['subject'] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(name ?? {})) {
    const first = firstOf(value as string | string[] | undefined);
    if (first !== undefined) out[key] = first;
  }
  return out;
}

/** Node's `Dec  2 18:00:00 2026 GMT` as ISO 8601; kept as given if it does not parse. */
function isoDate(text: string): string {
  const at = new Date(text);
  return Number.isNaN(at.getTime()) ? text : at.toISOString();
}

function firstOf(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
