import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** What the decision service counts: every decision by entrypoint and result, and its evaluation time. */
export interface DecisionMetrics {
  decisions: Counter<'entrypoint' | 'result'>;
  evalSeconds: Histogram<'entrypoint'>;
  decisionLogPending: Gauge;
}

export function createDecisionMetrics(registry: Registry): DecisionMetrics {
  return {
    decisions: new Counter({
      name: 'cynode_decisions_total',
      help: 'Policy decisions by entrypoint and result (allow, deny, error).',
      labelNames: ['entrypoint', 'result'],
      registers: [registry],
    }),
    evalSeconds: new Histogram({
      name: 'cynode_policy_eval_seconds',
      help: 'Wasm evaluation time per decision.',
      labelNames: ['entrypoint'],
      buckets: [5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 5e-3, 0.025],
      registers: [registry],
    }),
    decisionLogPending: new Gauge({
      name: 'cynode_decision_log_pending',
      help: 'Decisions buffered in memory, not yet written.',
      registers: [registry],
    }),
  };
}

/** What the decision-log export and the status reporter count (registered only when export or status reporting is on). */
export interface ExportMetrics {
  /** Events dropped before upload: the export buffer was full (the oldest go), or one event alone exceeds the upload limit. */
  dropped: Counter<'reason'>;
  /** Events the sink accepted (2xx). */
  uploaded: Counter;
  /** Upload attempts that failed (non-2xx or network error); their events are retried. */
  failed: Counter;
  /** Compressed bytes the sink accepted. */
  uploadedBytes: Counter;
  /** Events waiting for upload. */
  buffered: Gauge;
  /** Status reports sent, by result (ok, error). */
  statusReports: Counter<'result'>;
}

/** Registers the export and status-report metrics on `registry`; called by the export module only when one of them is on. */
export function createExportMetrics(registry: Registry): ExportMetrics {
  return {
    dropped: new Counter({
      name: 'cynode_decision_log_export_dropped_total',
      help: 'Decision events dropped from the export (never from the PostgreSQL decision log), by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    uploaded: new Counter({
      name: 'cynode_decision_log_export_uploaded_total',
      help: 'Decision events the decision-log sink accepted.',
      registers: [registry],
    }),
    failed: new Counter({
      name: 'cynode_decision_log_export_failed_total',
      help: 'Decision-log uploads that failed (non-2xx or network error) and are retried.',
      registers: [registry],
    }),
    uploadedBytes: new Counter({
      name: 'cynode_decision_log_export_uploaded_bytes_total',
      help: 'Compressed bytes the decision-log sink accepted.',
      registers: [registry],
    }),
    buffered: new Gauge({
      name: 'cynode_decision_log_export_buffered',
      help: 'Decision events waiting for upload.',
      registers: [registry],
    }),
    statusReports: new Counter({
      name: 'cynode_status_reports_total',
      help: 'Status reports sent in OPA Status API format, by result (ok, error).',
      labelNames: ['result'],
      registers: [registry],
    }),
  };
}
