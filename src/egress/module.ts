import type { Core } from '../core/module.js';
import { forwardMacKeys } from '../final-gate/forward-token.js';
import { createHttpClient } from '../lib/http-client.js';
import type { Authenticators } from '../server/app.js';
import type { Lifecycle } from '../server/lifecycle.js';
import type { Role } from '../server/roles.js';
import { bindRoutes, type BoundRoute } from '../server/route.js';
import { createCredentialStore, CREDENTIAL_ROUTES, type CredentialStore, loadKeyRing } from '../vault/index.js';
import type { PreferencesService } from '../preferences/index.js';
import type { WorkerService } from '../workers/index.js';
import { type AuditLog, createAuditLog } from './audit.js';
import { type BudgetAlerts, createBudgetAlerts } from './budget-alerts.js';
import { BLOCK_DEFAULTS } from './blocks.js';
import { LEASES_CHANNEL } from '../jobs/types.js';
import { createLedger, type Ledger } from './ledger.js';
import { createEgressMetrics, type EgressMetrics } from './metrics.js';
import { createSpendQueries } from './spend.js';
import { API_CALL_ROUTES, apiCallerAuth, BUDGET_AND_AUDIT_ROUTES, EGRESS_ROUTES } from './routes.js';
import { createEgressService, type EgressService } from './final-gate.js';
import { type ApiCallGateway, createApiCallGateway } from './first-gate.js';

/** API Egress as the gateway runs it: the vault, the ledger, the audit trail and both gates. */
export interface EgressModule {
  credentials: CredentialStore;
  ledger: Ledger;
  audit: AuditLog;
  egress: EgressService;
  apiCalls: ApiCallGateway;
  routes: BoundRoute[];
  authenticators: Pick<Authenticators, 'workerOrAdmin' | 'forward'>;
}

/** Soft-limit alerts, delivered on the reaper's interval and whenever a settlement crosses one; stopped before the audit log closes. */
function startBudgetAlerts(
  core: Core,
  deps: { now: () => number; audit: AuditLog; metrics: EgressMetrics },
  life: Lifecycle,
): BudgetAlerts {
  const { config } = core;
  const http = createHttpClient({ maxSockets: 4 });
  life.add('budget alert client', () => http.close());
  const alerts = createBudgetAlerts({
    knex: core.db.knex,
    now: deps.now,
    http,
    webhookUrl: config.budgets.alertWebhookUrl,
    timeoutMs: config.budgets.alertTimeoutMs,
    maxAttempts: config.budgets.alertMaxAttempts,
    audit: deps.audit,
    metrics: deps.metrics,
    logger: core.logger,
  });
  const timer = alerts.start(config.egress.reaperIntervalMs);
  life.add('budget alerts', async () => {
    timer.stop();
    await alerts.idle();
  });
  return alerts;
}

/**
 * Starts both gates of `api.call`. The first gate (control plane) hands an allowed call to the
 * final gate in this process when the egress role runs here and no egress URL is configured;
 * otherwise it forwards it over HTTP to `egress.url` (default: the local egress port).
 */
export function startEgress(
  core: Core,
  deps: { workers: WorkerService; preferences: PreferencesService; roles: readonly Role[] },
  life: Lifecycle,
): EgressModule {
  const { config, db, logger } = core;
  const ring = loadKeyRing(config.vault, logger);
  const credentials = createCredentialStore({ knex: db.knex, ring, logger });
  const metrics = createEgressMetrics(core.registry);
  const audit = createAuditLog(db.knex, logger, config.audit);
  life.add('api.call audit', () => audit.close());
  // One clock for the ledger and the alerts it raises.
  const now = Date.now;
  const alerts = startBudgetAlerts(core, { now, audit, metrics }, life);
  const ledger = createLedger({ knex: db.knex, now, onSoftLimit: () => alerts.kick() });
  const signing = { issuer: config.auth.issuer, forwardTokenTtlMs: config.auth.forwardTokenTtlMs, macKeys: forwardMacKeys(ring) };
  const egress = createEgressService({
    ...signing,
    keys: core.keys,
    knex: db.knex,
    logger,
    decisions: core.decisions,
    policy: core.policy,
    audit,
    ledger,
    credentials,
    providerUrls: Object.fromEntries(Object.entries(config.egress.providers).map(([name, p]) => [name, p.baseUrl])),
    call: {
      connectTimeoutMs: config.egress.connectTimeoutMs,
      idleTimeoutMs: config.egress.idleTimeoutMs,
      maxRetries: config.egress.maxRetries,
      maxRetryWaitMs: config.egress.maxRetryWaitMs,
    },
    reservationTtlMs: config.egress.reservationTtlMs,
    blocks: { ...BLOCK_DEFAULTS, drawMs: config.egress.blockDrawMs, maxCalls: config.egress.blockMaxCalls },
    metrics,
  });
  life.add('egress calls in flight', () => egress.settled());
  const egressUrl = config.egress.url ?? `http://127.0.0.1:${config.server.egressPort}`;
  const apiCalls = createApiCallGateway({
    ...signing,
    knex: db.knex,
    logger,
    decisions: core.decisions,
    policy: core.policy,
    audit,
    preferences: deps.preferences,
    ledger,
    egressUrl: () => egressUrl,
    region: config.egress.region,
    requestTimeoutMs: config.server.requestTimeoutMs,
    contextReuse: { reuseMs: config.egress.contextReuseMs, listening: () => core.listener.listening(LEASES_CHANNEL) },
    metrics,
    ...(deps.roles.includes('egress') && config.egress.url === null && { local: egress }),
  });
  core.listener.on(LEASES_CHANNEL, (nodeId) => apiCalls.leaseEnded(nodeId || undefined));
  life.add('api.call forwarding', () => apiCalls.close());
  const reaper = egress.startReaper(config.egress.reaperIntervalMs);
  life.add('reservation reaper', () => reaper.stop());
  return {
    credentials,
    ledger,
    audit,
    egress,
    apiCalls,
    routes: [
      ...bindRoutes(CREDENTIAL_ROUTES, credentials),
      ...bindRoutes(BUDGET_AND_AUDIT_ROUTES, { ledger, audit, spend: createSpendQueries(db.knex) }),
      ...bindRoutes(API_CALL_ROUTES, apiCalls),
      ...bindRoutes(EGRESS_ROUTES, { egress, maxBodyBytes: config.server.maxBodyBytes }),
    ],
    authenticators: {
      workerOrAdmin: apiCallerAuth(core.adminToken, deps.workers),
      // The forward token is bound to the body: the final gate verifies both together.
      forward: async (_ctx, next) => next(),
    },
  };
}
