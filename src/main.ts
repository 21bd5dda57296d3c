import type { Config } from './config/index.js';
import { startConsole } from './console/module.js';
import { startCore } from './core/module.js';
import type { DecisionLog, DecisionService } from './decisions/index.js';
import { startEgress } from './egress/module.js';
import { startExport } from './export/module.js';
import type { AuditLog, EgressService, Ledger } from './egress/index.js';
import { parseLeaseRefs, releaseLeasesOf } from './jobs/index.js';
import type { JobService, LeaseService } from './jobs/index.js';
import { startJobs } from './jobs/module.js';
import type { KeyStore } from './keys/index.js';
import type { Logger } from './logging/index.js';
import type { ToolAudit } from './mcp/index.js';
import { startMcp } from './mcp/module.js';
import type { Registry } from 'prom-client';
import { startOps } from './ops/module.js';
import { startAuditCheckpoints } from './audit/module.js';
import type { PolicyEngine } from './policy/index.js';
import type { PreferencesService } from './preferences/index.js';
import { startReplay } from './replay/module.js';
import { ROUTE_TABLE } from './routes.js';
import type { RegisteredRoute } from './server/app.js';
import { createLifecycle } from './server/lifecycle.js';
import type { Listening } from './server/listen.js';
import type { Role } from './server/roles.js';
import { startServers } from './server/serve.js';
import type { SettingsService } from './settings/index.js';
import type { Database } from './storage/index.js';
import type { CredentialStore } from './vault/index.js';
import type { PskStore, WorkerService } from './workers/index.js';
import { startWorkers } from './workers/module.js';

/** A running gateway: its listeners and parts, and the one way to stop it. */
export interface Gateway {
  listening: Listening[];
  db: Database;
  policy: PolicyEngine;
  decisions: DecisionService;
  decisionLog: DecisionLog;
  settings: SettingsService;
  keys: KeyStore;
  preferences: PreferencesService;
  psks: PskStore;
  workers: WorkerService;
  jobs: JobService;
  leases: LeaseService;
  credentials: CredentialStore;
  ledger: Ledger;
  audit: AuditLog;
  toolAudit: ToolAudit;
  egress: EgressService;
  /** The Prometheus registry `/metrics` serves. */
  metrics: Registry;
  /** The routes each running role serves (what /openapi.json describes). */
  routes: Partial<Record<Role, RegisteredRoute[]>>;
  /** Stops accepting, drains in-flight requests (up to the shutdown grace), then stops every part in reverse start order. */
  stop(): Promise<void>;
}

/** What the composition root needs: validated config, the root logger and the roles to run. */
export interface GatewayOptions {
  config: Config;
  logger: Logger;
  roles: readonly Role[];
}

/**
 * The composition root: starts the modules in dependency order (core, export, jobs, workers, egress,
 * MCP, ops), then the listeners of the roles asked for. Every module records its stops as it
 * starts its parts, so a shutdown and a start that fails half way take the same path: every
 * part started so far is stopped, in reverse order. Nothing below reads `process.env`.
 */
export async function startGateway({ config, logger, roles }: GatewayOptions): Promise<Gateway> {
  const life = createLifecycle(logger);
  try {
    const core = await startCore(config, logger, life);
    startExport(core, life);
    const jobs = startJobs(core, life);
    const releaseLeases = (ids: readonly string[]) => releaseLeasesOf({ knex: core.db.knex, notify: core.notify, waker: jobs.waker }, ids);
    const workers = startWorkers(core, { renew: (w, l) => jobs.leases.renew(w, l), parseLeases: parseLeaseRefs, releaseLeases }, life);
    const egress = startEgress(core, { workers: workers.workers, preferences: core.runtime.preferences, roles }, life);
    const mcp = startMcp(core, { workers: workers.workers, apiCalls: egress.apiCalls }, life);
    const ops = startOps(core, [jobs.refreshGauges]);
    const replay = startReplay(core);
    startAuditCheckpoints(core, [egress.audit, mcp.toolAudit], life);
    const ui = startConsole(core, { api_audit: egress.audit, tool_audit: mcp.toolAudit }, life);
    const serving = await startServers(
      {
        config,
        logger,
        roles,
        table: ROUTE_TABLE,
        routes: [
          ...ops.routes,
          ...core.routes,
          ...replay.routes,
          ...egress.routes,
          ...workers.routes,
          ...jobs.routes,
          ...mcp.routes,
          ...ui.routes,
        ],
        authenticators: {
          ...core.authenticators,
          ...workers.authenticators,
          ...egress.authenticators,
          ...mcp.authenticators,
          ...ops.authenticators,
          ...ui.authenticators,
        },
        // Long polls answer at once instead of holding the drain open.
        beforeDrain: [() => jobs.leases.close()],
      },
      life,
    );
    return {
      listening: serving.listening,
      routes: serving.routes,
      db: core.db,
      policy: core.policy,
      decisions: core.decisions,
      decisionLog: core.decisionLog,
      settings: core.runtime.settings,
      preferences: core.runtime.preferences,
      keys: core.keys,
      metrics: core.registry,
      psks: workers.psks,
      workers: workers.workers,
      jobs: jobs.jobs,
      leases: jobs.leases,
      credentials: egress.credentials,
      ledger: egress.ledger,
      audit: egress.audit,
      egress: egress.egress,
      toolAudit: mcp.toolAudit,
      stop: () => life.stopAll(),
    };
  } catch (err) {
    await life.stopAll();
    throw err;
  }
}
