import { readFile, stat } from 'node:fs/promises';
import { unwatchFile, watchFile } from 'node:fs';
import { errorMessage } from '../lib/error-message.js';
import { createHttpClient, type HttpClient, type HttpRequest, HttpTimeoutError } from '../lib/http-client.js';
import type { Logger } from '../logging/index.js';
import { MAX_BUNDLE_BYTES } from './bundle.js';
import type { ActiveBundle, PolicyEngine } from './engine.js';
import { BundleError } from './errors.js';

/** Activates the bundle file at `path`; failures are recorded in the engine's status and rethrown. */
export function activateFromFile(engine: PolicyEngine, path: string): Promise<ActiveBundle> {
  return engine.activate(path, () => readFile(path));
}

/** A running bundle source. */
export interface BundleSource {
  /** Resolves after the first load attempt (success or recorded failure). */
  ready: Promise<void>;
  /** Checks the source now instead of at the next poll (another replica saw a new bundle). */
  refresh(): void;
  close(): void;
}

/** The NOTIFY channel on which a replica that activated a new bundle tells the others to look now. */
export const BUNDLE_CHANNEL = 'cynode_bundle';

/** Options shared by the sources. */
export interface SourceOptions {
  engine: PolicyEngine;
  logger: Logger;
}

/**
 * Loads a bundle file and reloads it whenever it changes (polled by stat, which survives the
 * atomic rename `opa build` and editors use). A bad new file leaves the last good bundle active.
 */
export function watchBundleFile(path: string, options: SourceOptions & { intervalMs?: number }): BundleSource {
  const log = options.logger.child({ component: 'bundle-file' });
  let lastStamp = '';
  const load = async () => {
    const info = await stat(path).catch(() => undefined);
    const stamp = info ? `${info.mtimeMs}:${info.size}:${info.ino}` : 'missing';
    if (stamp === lastStamp) return;
    lastStamp = stamp;
    const before = options.engine.status().active?.digest;
    const next = await activateFromFile(options.engine, path).catch(() => undefined);
    if (next && before && next.digest !== before) log.info({ revision: next.revision }, 'bundle file changed; reloaded');
  };
  const ready = load();
  const listener = () => void load();
  watchFile(path, { interval: options.intervalMs ?? 500, persistent: false }, listener);
  return { ready, refresh: listener, close: () => unwatchFile(path, listener) };
}

/** Options of the URL source (OPA Bundle Service API client). */
export interface UrlSourceOptions extends SourceOptions {
  token: string | null;
  minDelayMs: number;
  maxDelayMs: number;
  /** >0: ask the server to hold the request this long (OPA long polling). */
  longPollTimeoutMs: number;
  /** Per-request timeout when not long polling; a long poll gets this much on top of its wait. */
  requestTimeoutMs?: number;
  /** The client bundles are pulled with, e.g. a test's; by default the source's own, closed with it. */
  http?: HttpClient;
}

/** Redirects a bundle pull follows, as many as fetch would (a bundle may sit behind a CDN). */
const MAX_REDIRECTS = 20;

/**
 * Pulls a bundle from an OPA Bundle Service: `If-None-Match` with the last ETag, a delay drawn
 * between min and max (jitter spreads replicas), optional long polling. Download errors and
 * bad bundles are recorded in status; the last good bundle stays active.
 */
export function pollBundleUrl(url: string, options: UrlSourceOptions): BundleSource {
  const log = options.logger.child({ component: 'bundle-url' });
  const client = options.http ?? createHttpClient({ maxSockets: 2 });
  let etag: string | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: AbortController | undefined;
  let longPollSupported = false;
  let running = false;

  const once = async (): Promise<void> => {
    const longPoll = options.longPollTimeoutMs > 0;
    // Aborted only by close(); the download as a whole is bounded by the total timeout.
    inFlight = new AbortController();
    try {
      const res = await client.request(new URL(url), pullRequest(options, etag, inFlight.signal));
      try {
        longPollSupported = longPoll && String(res.headers['content-type'] ?? '').includes('vnd.openpolicyagent.bundles');
        if (res.status === 304) {
          await res.bytes(); // empty: reading it hands the connection back for the next poll
          return;
        }
        if (res.status !== 200) throw new BundleError('bundle_unreadable', `bundle server answered ${res.status} for ${url}`);
        const bytes = await res.bytes();
        const newTag = res.headers.etag;
        await options.engine.activate(url, async () => bytes);
        etag = newTag;
      } finally {
        res.destroy();
      }
    } catch (err) {
      longPollSupported = false; // never spin on a failing server: fall back to the jittered delay
      if (!closed) recordPullFailure(options.engine, url, err);
    }
  };

  const run = () => {
    running = true;
    return once().finally(() => {
      running = false;
      schedule();
    });
  };
  const schedule = () => {
    if (closed) return;
    const jitter = options.minDelayMs + Math.random() * (options.maxDelayMs - options.minDelayMs);
    // A server that holds requests answers when something changes: ask again at once.
    const delay = longPollSupported ? 0 : jitter;
    timer = setTimeout(() => void run(), delay);
  };

  const ready = run();
  log.info({ url }, 'pulling the policy bundle from a bundle service');
  return {
    ready,
    refresh() {
      // A request in flight (or parked by long polling) already asks the server.
      if (closed || running) return;
      clearTimeout(timer);
      void run();
    },
    close() {
      closed = true;
      clearTimeout(timer);
      inFlight?.abort();
      if (!options.http) client.close();
    },
  };
}

/** One bundle pull: the ETag held, the bearer token, long polling if asked; bounded in time and size. */
function pullRequest(options: UrlSourceOptions, etag: string | undefined, signal: AbortSignal): HttpRequest {
  const longPoll = options.longPollTimeoutMs > 0;
  const headers: Record<string, string> = { accept: 'application/gzip, application/vnd.openpolicyagent.bundles' };
  if (etag) headers['if-none-match'] = etag;
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (longPoll) headers.prefer = `modes=long-polling;wait=${Math.ceil(options.longPollTimeoutMs / 1000)}`;
  return {
    method: 'GET',
    headers,
    signal,
    totalTimeoutMs: (longPoll ? options.longPollTimeoutMs : 0) + (options.requestTimeoutMs ?? 30_000),
    maxResponseBytes: MAX_BUNDLE_BYTES,
    maxRedirects: MAX_REDIRECTS,
  };
}

/** Records a failed pull in the engine's status; a bundle the engine refused is already recorded. */
function recordPullFailure(engine: PolicyEngine, url: string, err: unknown): void {
  if (err instanceof BundleError) {
    if (err.code === 'bundle_unreadable') engine.recordFailure(url, err);
    return; // activate() already recorded its own refusals
  }
  const reason = err instanceof HttpTimeoutError ? 'timed out' : errorMessage(err);
  engine.recordFailure(url, new BundleError('bundle_unreadable', `cannot download ${url}: ${reason}`));
}

/** Starts the source `CYNODE_BUNDLE` names: an http(s) URL, or a file path. */
export function startBundleSource(bundle: string, options: Omit<UrlSourceOptions, 'http'>): BundleSource {
  return /^https?:\/\//.test(bundle) ? pollBundleUrl(bundle, options) : watchBundleFile(bundle, options);
}
