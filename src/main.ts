export type { Gateway, GatewayOptions } from './gateway.js';
import { startConsole } from './console/module.js';
import { startCore } from './core/module.js';
import { startEgress } from './egress/module.js';
import { startExport } from './export/module.js';
import { parseLeaseRefs, releaseLeasesOf } from './jobs/index.js';
import { startJobs } from './jobs/module.js';
import { startMcp } from './mcp/module.js';
import { startModelApi } from './model-api/module.js';
import { startOps } from './ops/module.js';
import { startAuditCheckpoints } from './audit/module.js';
import { startReplay } from './replay/module.js';
import { ROUTE_TABLE } from './routes.js';
import type { Gateway, GatewayOptions } from './gateway.js';
import { createLifecycle } from './server/lifecycle.js';
import { startServers } from './server/serve.js';
import { startWorkers } from './workers/module.js';

/**
 * The composition root: starts the modules in dependency order (core, decision-log export, jobs,
 * workers, egress, MCP, the drop-in model APIs, ops, replay, audit checkpoints, console), then the listeners of the
 * roles asked for. Every module records its stops as it
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
    const models = startModelApi({ apiCalls: egress.apiCalls, callers: mcp.callers });
    const ops = startOps(core, [jobs.refreshGauges]);
    const replay = startReplay(core);
    startAuditCheckpoints(core, [egress.audit, mcp.toolAudit, workers.audit], life);
    const ui = startConsole(core, { api_audit: egress.audit, tool_audit: mcp.toolAudit, worker_audit: workers.audit }, life);
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
          ...models.routes,
          ...ui.routes,
        ],
        authenticators: {
          ...core.authenticators,
          ...workers.authenticators,
          ...egress.authenticators,
          ...mcp.authenticators,
          ...models.authenticators,
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
