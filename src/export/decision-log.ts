import type { DecisionEvent } from '../decisions/index.js';
import type { ExportMetrics } from '../decisions/metrics.js';
import { errorMessage } from '../lib/error-message.js';
import type { HttpClient } from '../lib/http-client.js';
import type { Logger } from '../logging/index.js';
import { redactUrl } from '../logging/redact.js';
import { createExportBuffer, type DropReason, type ExportBuffer } from './buffer.js';
import { createChunker } from './chunks.js';
import { type Labels, toOpaEvent } from './opa-event.js';
import { postToSink, SinkRefusedError, type SinkTarget } from './sink.js';

/** How the exporter buffers, packs and paces uploads (`decisionLog.export.*`). */
export interface DecisionExportOptions extends SinkTarget {
  uploadSizeLimitBytes: number;
  bufferSizeLimitEvents: number;
  minDelayMs: number;
  maxDelayMs: number;
  flushTimeoutMs: number;
}

/** What the exporter needs besides its options. */
export interface DecisionExportDeps {
  http: HttpClient;
  logger: Logger;
  metrics: ExportMetrics;
  labels: Labels;
  random?: () => number;
}

/** The exporter's state, for `GET /v1/status` and the status reports. */
export interface DecisionExportStatus {
  url: string;
  buffered: number;
  inFlight: number;
  uploaded: number;
  uploadedBytes: number;
  failedUploads: number;
  dropped: number;
  /** Consecutive failed uploads; 0 when the last one succeeded. */
  retries: number;
  lastSuccessAt: string | null;
  lastError: { message: string; httpStatus: number | null; at: string } | null;
}

/** Sends a copy of every recorded decision to an OPA Decision Log Service. */
export interface DecisionExporter {
  /** Buffers one decision; synchronous and never failing, so the request path only pays a push. */
  enqueue(event: DecisionEvent): void;
  /** Uploads everything buffered now; rejects at the first failed upload (its events stay buffered). */
  flush(): Promise<void>;
  status(): DecisionExportStatus;
  /** Stops the timer and tries, for at most `flushTimeoutMs`, to upload what is left. */
  stop(): Promise<void>;
}

const RETRY_BASE_MS = 100;
// No decision event compresses below this; it bounds how many events one chunk may look at.
const MIN_EVENT_BYTES = 16;
const HEADERS = { 'content-type': 'application/json', 'content-encoding': 'gzip' };

/** Counters of one exporter, shared by its parts. */
type Totals = Omit<DecisionExportStatus, 'url' | 'buffered' | 'lastSuccessAt' | 'lastError'> & {
  lastSuccessAt: Date | undefined;
  lastError: DecisionExportStatus['lastError'];
};

/**
 * The decision-log exporter, paced as OPA's decision-log plugin: an upload every `minDelayMs`
 * to `maxDelayMs` at random, everything buffered going out in gzip chunks of at most
 * `uploadSizeLimitBytes`; a failed upload keeps its events and is retried with exponential
 * backoff (from 100 ms, capped at `maxDelayMs`). The buffer holds `bufferSizeLimitEvents`; past
 * that the oldest event is dropped and counted — a copy is lost, never a decision, which the
 * PostgreSQL log keeps. A buffer half full does not wait for the timer. (One closure over the
 * exporter's state, a little past 80 lines; the buffer, uploader, delays and final flush are
 * their own functions.)
 */
export function createDecisionExporter(options: DecisionExportOptions, deps: DecisionExportDeps): DecisionExporter {
  const log = deps.logger.child({ component: 'decision-log-export', url: redactUrl(options.url.toString()) });
  const random = deps.random ?? Math.random;
  const totals: Totals = {
    inFlight: 0,
    uploaded: 0,
    uploadedBytes: 0,
    failedUploads: 0,
    dropped: 0,
    retries: 0,
    lastSuccessAt: undefined,
    lastError: null,
  };
  const buffer = createExportBuffer(options.bufferSizeLimitEvents, (count, reason: DropReason) => {
    totals.dropped += count;
    deps.metrics.dropped.inc({ reason }, count);
  });
  const uploadOne = createUploader(options, deps, buffer, totals, log);
  let uploading: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let early = false;

  const uploadAll = (timeoutMs = options.timeoutMs): Promise<void> =>
    (uploading ??= (async () => {
      try {
        while (await uploadOne(timeoutMs));
        if (totals.retries > 0) log.info({ retries: totals.retries }, 'decision-log uploads resumed');
        totals.retries = 0;
        totals.lastSuccessAt = new Date();
      } catch (err) {
        if (totals.retries === 0)
          log.error({ err: errorMessage(err), buffered: buffer.length }, 'decision-log upload failed; retrying with backoff');
        totals.retries++;
        totals.failedUploads++;
        deps.metrics.failed.inc();
        const httpStatus = err instanceof SinkRefusedError ? err.status : null;
        totals.lastError = { message: errorMessage(err), httpStatus, at: new Date().toISOString() };
        throw err;
      }
    })().finally(() => (uploading = undefined)));

  const nextDelay = () => delayBefore(options, totals.retries, random);
  const tick = () => {
    early = false;
    clearTimeout(timer);
    uploadAll()
      .catch(() => undefined)
      .finally(() => {
        if (stopped) return;
        timer = setTimeout(tick, nextDelay());
        timer.unref();
      });
  };
  timer = setTimeout(tick, nextDelay());
  timer.unref();

  return {
    enqueue(event) {
      buffer.push(event);
      deps.metrics.buffered.set(buffer.length);
      // Half full while the sink is healthy: upload soon (off this request's path) rather than risk drops before the timer.
      if (!early && !stopped && totals.retries === 0 && !uploading && buffer.length * 2 >= options.bufferSizeLimitEvents) {
        early = true;
        clearTimeout(timer);
        timer = setTimeout(tick, 0);
      }
    },
    flush: () => uploadAll(),
    status: () => ({
      ...totals,
      url: redactUrl(options.url.toString()),
      buffered: buffer.length,
      lastSuccessAt: totals.lastSuccessAt?.toISOString() ?? null,
    }),
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await uploading?.catch(() => undefined);
      await finalFlush(options, buffer, uploadAll, nextDelay, log);
    },
  };
}

/** The wait before the next upload: min..max at random after a success, exponential backoff with jitter after failures. */
function delayBefore(options: DecisionExportOptions, retries: number, random: () => number): number {
  if (retries === 0) return options.minDelayMs + random() * (options.maxDelayMs - options.minDelayMs);
  return Math.min(options.maxDelayMs, RETRY_BASE_MS * 2 ** (retries - 1)) * (0.5 + random() / 2);
}

/**
 * Uploads one chunk from the head of the buffer; resolves false when the buffer is empty and
 * rejects when the upload fails, with the chunk's events back at the head.
 */
function createUploader(
  options: DecisionExportOptions,
  deps: DecisionExportDeps,
  buffer: ExportBuffer,
  totals: Totals,
  log: Logger,
): (timeoutMs: number) => Promise<boolean> {
  const chunker = createChunker(options.uploadSizeLimitBytes);
  const maxPerChunk = Math.ceil(options.uploadSizeLimitBytes / MIN_EVENT_BYTES);
  return async (timeoutMs) => {
    if (buffer.length === 0) return false;
    let taken = buffer.take(maxPerChunk);
    totals.inFlight = taken.length;
    try {
      const json = (i: number) => (taken[i]!.json ??= JSON.stringify(toOpaEvent(taken[i]!.event, deps.labels)));
      const chunk = await chunker.nextChunk(json, taken.length);
      const count = 'oversized' in chunk ? 1 : chunk.count;
      buffer.putBack(taken.slice(count));
      taken = taken.slice(0, count);
      totals.inFlight = count;
      if ('oversized' in chunk) {
        taken = [];
        totals.dropped++;
        deps.metrics.dropped.inc({ reason: 'oversized' });
        log.warn('a decision event alone exceeds decisionLog.export.uploadSizeLimitBytes; dropped from the export');
        return true;
      }
      await postToSink(deps.http, options, chunk.body, HEADERS, timeoutMs);
      taken = [];
      totals.uploaded += count;
      totals.uploadedBytes += chunk.body.length;
      deps.metrics.uploaded.inc(count);
      deps.metrics.uploadedBytes.inc(chunk.body.length);
      return true;
    } finally {
      // A failed chunk goes back to the head, oldest first; a buffer that filled meanwhile drops it first.
      buffer.putBack(taken);
      totals.inFlight = 0;
      deps.metrics.buffered.set(buffer.length);
    }
  };
}

/** Shutdown: keeps uploading until the buffer is empty or `flushTimeoutMs` has passed, then counts the rest as dropped. */
async function finalFlush(
  options: DecisionExportOptions,
  buffer: ExportBuffer,
  uploadAll: (timeoutMs: number) => Promise<void>,
  nextDelay: () => number,
  log: Logger,
): Promise<void> {
  const deadline = Date.now() + options.flushTimeoutMs;
  while (buffer.length > 0 && Date.now() < deadline) {
    try {
      await uploadAll(Math.max(1, Math.min(options.timeoutMs, deadline - Date.now())));
    } catch {
      await new Promise((resolve) => setTimeout(resolve, Math.min(nextDelay(), Math.max(0, deadline - Date.now()))));
    }
  }
  const lost = buffer.dropAll('shutdown');
  if (lost > 0) log.error({ lost }, 'decision events not exported at shutdown (the PostgreSQL decision log has them)');
}
