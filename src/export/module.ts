import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Core } from '../core/module.js';
import { createExportMetrics } from '../decisions/metrics.js';
import { createHttpClient } from '../lib/http-client.js';
import { packageRoot } from '../lib/package-root.js';
import type { Lifecycle } from '../server/lifecycle.js';
import { createDecisionExporter, type DecisionExporter } from './decision-log.js';
import type { Labels } from './opa-event.js';
import { type StatusReporter, startStatusReporter } from './status.js';

/** The running export parts (each absent when its URL is not configured). */
export interface ExportModule {
  exporter: DecisionExporter | undefined;
  reporter: StatusReporter | undefined;
}

// Uploads and reports go one or two at a time; a few sockets are plenty.
const MAX_SOCKETS = 4;

/**
 * Starts what the gateway tells management services, in OPA's own formats: the decision-log
 * exporter (`decisionLog.export.url`), fed by every decision the PostgreSQL log records, and
 * the status reporter (`status.url`). Adds the `export` section to `GET /v1/status`. Its stop
 * ends the status period and gives the exporter `decisionLog.export.flushTimeoutMs` to upload
 * what is left.
 */
export function startExport(core: Core, life: Lifecycle): ExportModule {
  const { export: exportConfig } = core.config.decisionLog;
  const statusConfig = core.config.status;
  const module: ExportModule = { exporter: undefined, reporter: undefined };
  if (exportConfig.url === null && statusConfig.url === null) {
    core.statusSections.export = () => ({ decisionLog: { enabled: false }, status: { enabled: false } });
    return module;
  }
  const http = createHttpClient({ maxSockets: MAX_SOCKETS });
  life.add('export HTTP client', () => http.close());
  const metrics = createExportMetrics(core.registry);
  const labels: Labels = { id: randomUUID(), version: packageVersion(), replica: hostname() };

  if (exportConfig.url !== null) {
    const exporter = createDecisionExporter(
      { ...exportConfig, url: new URL(exportConfig.url) },
      { http, logger: core.logger, metrics, labels },
    );
    const unsubscribe = core.decisionLog.onRecord((event) => exporter.enqueue(event));
    life.add('decision-log export', async () => {
      unsubscribe();
      await exporter.stop();
    });
    module.exporter = exporter;
  }
  if (statusConfig.url !== null) {
    const exporter = module.exporter;
    const reporter = startStatusReporter(
      { ...statusConfig, url: new URL(statusConfig.url) },
      {
        http,
        logger: core.logger,
        metrics,
        labels,
        engine: core.policy,
        registry: core.registry,
        ...(exporter && { exporter: () => exporter.status() }),
      },
    );
    life.add('status reports', () => reporter.stop());
    module.reporter = reporter;
  }
  core.statusSections.export = () => ({
    decisionLog: module.exporter ? { enabled: true, ...module.exporter.status() } : { enabled: false },
    status: module.reporter ? { enabled: true, ...module.reporter.state() } : { enabled: false },
  });
  return module;
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
