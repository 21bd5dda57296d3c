import type { Registry } from 'prom-client';
import type { ExportMetrics } from '../decisions/metrics.js';
import { errorMessage } from '../lib/error-message.js';
import type { HttpClient } from '../lib/http-client.js';
import { startPeriodic } from '../lib/periodic.js';
import type { Logger } from '../logging/index.js';
import { redactUrl } from '../logging/redact.js';
import { BUNDLE_NAME, type PolicyEngine } from '../policy/index.js';
import type { DecisionExportStatus } from './decision-log.js';
import type { Labels } from './opa-event.js';
import { postToSink, type SinkTarget } from './sink.js';

/** A bundle's status as OPA's status plugin reports it. */
export interface OpaBundleStatus {
  name: string;
  active_revision?: string;
  last_successful_activation?: string;
  last_successful_download?: string;
  type: 'snapshot';
  code?: string;
  message?: string;
  errors?: { code: string; message: string }[];
}

/** A plugin's state, in OPA's words. */
export interface OpaPluginStatus {
  state: 'OK' | 'NOT_READY' | 'ERROR';
  message?: string;
}

/** One status report in OPA's Status API format (`POST <status.url>`). */
export interface StatusReport {
  labels: Labels;
  bundles: Record<string, OpaBundleStatus>;
  decision_logs?: { code?: string; message?: string; http_code?: number };
  plugins: Record<string, OpaPluginStatus>;
  metrics: { prometheus: Record<string, unknown> };
}

/** What a report is built from. */
export interface StatusSources {
  engine: PolicyEngine;
  labels: Labels;
  registry: Registry;
  /** The decision-log exporter's state, when export is on. */
  exporter?: () => DecisionExportStatus;
}

// The metrics a report carries: decisions, evaluation, bundles, export (not the process's own).
const REPORTED_METRICS = /^cynode_(decision|policy|bundle|status)/;

/** The report OPA's status plugin would send for this gateway right now. */
export async function buildStatusReport(sources: StatusSources): Promise<StatusReport> {
  const exported = sources.exporter?.();
  const report: StatusReport = {
    labels: sources.labels,
    bundles: { [BUNDLE_NAME]: bundleStatus(sources.engine) },
    plugins: {
      bundle: { state: sources.engine.status().active ? 'OK' : 'NOT_READY' },
      status: { state: 'OK' },
      ...(exported && { decision_logs: { state: exported.retries > 0 ? 'ERROR' : 'OK' } }),
    },
    metrics: { prometheus: await prometheusMetrics(sources.registry) },
  };
  if (exported) report.decision_logs = decisionLogStatus(exported);
  return report;
}

function bundleStatus(engine: PolicyEngine): OpaBundleStatus {
  const { active, lastSuccessAt, lastError } = engine.status();
  const status: OpaBundleStatus = { name: BUNDLE_NAME, type: 'snapshot' };
  if (active) {
    status.active_revision = active.revision;
    status.last_successful_activation = active.activatedAt.toISOString();
  }
  if (lastSuccessAt) status.last_successful_download = lastSuccessAt.toISOString();
  // The last error counts until a later bundle succeeds, as OPA clears it on the next good one.
  if (lastError && (!lastSuccessAt || lastError.at > lastSuccessAt)) {
    status.code = 'bundle_error';
    status.message = lastError.message;
    status.errors = [{ code: lastError.code, message: lastError.message }];
  }
  return status;
}

function decisionLogStatus(exported: DecisionExportStatus): StatusReport['decision_logs'] {
  if (exported.retries === 0 || !exported.lastError) return {};
  return {
    code: 'decision_log_error',
    message: exported.lastError.message,
    ...(exported.lastError.httpStatus !== null && { http_code: exported.lastError.httpStatus }),
  };
}

async function prometheusMetrics(registry: Registry): Promise<Record<string, unknown>> {
  const metrics = await registry.getMetricsAsJSON();
  return Object.fromEntries(
    metrics
      .filter((m) => REPORTED_METRICS.test(m.name))
      .map((m) => [m.name, { name: m.name, help: m.help, type: m.type, metric: m.values }]),
  );
}

/** Where and how often reports go (`status.*`). */
export interface StatusReporterOptions extends SinkTarget {
  periodMs: number;
}

/** The reporter's state, for `GET /v1/status`. */
export interface StatusReporterState {
  url: string;
  sent: number;
  failed: number;
  lastSentAt: string | null;
  lastError: { message: string; at: string } | null;
}

/** Sends status reports; `stop` ends the period and waits for a report in flight. */
export interface StatusReporter {
  /** Sends a report now (a report asked for while one is in flight follows it). */
  report(): Promise<void>;
  state(): StatusReporterState;
  stop(): Promise<void>;
}

/**
 * Reports in OPA's Status API format: at start, whenever a bundle is activated or refused, and
 * every `periodMs`. A failed report is logged and counted, not retried: the next one says the
 * same and more, as OPA's status plugin does.
 */
export function startStatusReporter(
  options: StatusReporterOptions,
  deps: StatusSources & { http: HttpClient; logger: Logger; metrics: ExportMetrics },
): StatusReporter {
  const log = deps.logger.child({ component: 'status-report', url: redactUrl(options.url.toString()) });
  const state: StatusReporterState = { url: redactUrl(options.url.toString()), sent: 0, failed: 0, lastSentAt: null, lastError: null };
  let inFlight: Promise<void> | undefined;
  let again = false;
  let failing = false;

  const sendOnce = async () => {
    try {
      const report = await buildStatusReport(deps);
      await postToSink(deps.http, options, JSON.stringify(report), { 'content-type': 'application/json' });
      state.sent++;
      state.lastSentAt = new Date().toISOString();
      deps.metrics.statusReports.inc({ result: 'ok' });
      failing = false;
    } catch (err) {
      if (!failing) log.warn({ err: errorMessage(err) }, 'status report failed');
      failing = true;
      state.failed++;
      state.lastError = { message: errorMessage(err), at: new Date().toISOString() };
      deps.metrics.statusReports.inc({ result: 'error' });
    }
  };
  const report = (): Promise<void> => {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = (async () => {
      do {
        again = false;
        await sendOnce();
      } while (again);
    })().finally(() => (inFlight = undefined));
    return inFlight;
  };

  const unsubscribe = [deps.engine.onActivate(() => void report()), deps.engine.onRefuse(() => void report())];
  const periodic = startPeriodic(report, options.periodMs, () => undefined);
  void report();
  return {
    report,
    state: () => ({ ...state }),
    async stop() {
      periodic.stop();
      for (const off of unsubscribe) off();
      await inFlight;
    },
  };
}
