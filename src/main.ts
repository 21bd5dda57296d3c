import { createHash } from 'node:crypto';
import Router from '@koa/router';
import { bearerAuth, resolveAdminToken, type StaticToken } from './auth/index.js';
import type { Config } from './config/index.js';
import { createDecisionLog, createDecisionService, decisionRoutes, type DecisionLog, type DecisionService } from './decisions/index.js';
import {
  apiCallerAuth,
  apiCallRoutes,
  type AuditLog,
  budgetAndAuditRoutes,
  createApiCallGateway,
  createAuditLog,
  createEgressService,
  createLedger,
  egressRoutes,
  type EgressService,
  type Ledger,
} from './egress/index.js';
import { agentTokenRoutes, createAgentTokens, createUpstreamClient, createToolAudit, mcpRoutes, parseUpstreams, type ToolAudit } from './mcp/index.js';
import { createHealthService, healthRoutes } from './health/index.js';
import { createJobService, createJobWaker, createLeaseService, JOBS_CHANNEL, jobAdminRoutes, jobWorkerRoutes, type JobService, type LeaseService, parseLeaseRefs } from './jobs/index.js';
import { createKeyStore, jwksRoutes, keyAdminRoutes, type KeyStore } from './keys/index.js';
import type { Logger } from './logging/index.js';
import { StartupError } from './lib/startup-error.js';
import { createMetrics, type Metrics, metricsRoutes, setJobCounts } from './metrics/index.js';
import { openApiRoutes } from './openapi/index.js';
import {
  BUNDLE_CHANNEL,
  BUNDLE_NAME,
  type BundleSource,
  bundleServiceRoutes,
  createPolicyEngine,
  type PolicyEngine,
  REQUIRED_ENTRYPOINTS,
  startBundleSource,
  statusRoutes,
} from './policy/index.js';
import { createBundleChecks } from './policy/checks.js';
import { createRoleApp, type RegisteredRoute, registeredRoutes } from './server/app.js';
import { type Listening, listen } from './server/listen.js';
import { portOf, type Role } from './server/roles.js';
import { createPreferencesService, PREFERENCES_CHANNEL, preferencesRoutes, type PreferencesService } from './preferences/index.js';
import { createSettingsService, SETTINGS_CHANNEL, type SettingsService, settingsRoutes } from './settings/index.js';
import { connectAndMigrate, type Database } from './storage/index.js';
import { createCredentialStore, credentialRoutes, type CredentialStore, loadKeyRing } from './vault/index.js';
import { listenChannels } from './storage/listener.js';
import {
  createFailureThrottle,
  createPskStore,
  createWorkerService,
  createWorkerTokens,
  type PskStore,
  workerAdminRoutes,
  workerAuth,
  workerRoutes,
  type WorkerService,
} from './workers/index.js';

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
  metrics: Metrics;
  /** The routes each running role serves (what /openapi.json describes). */
  routes: Partial<Record<Role, RegisteredRoute[]>>;
  /** Stops accepting, drains in-flight requests (up to the shutdown grace), flushes the decision log, closes the database. */
  stop(): Promise<void>;
}

/** What the composition root needs: validated config, the root logger and the roles to run. */
export interface GatewayOptions {
  config: Config;
  logger: Logger;
  roles: readonly Role[];
}

/** Tokens live at most this long; retired signing keys keep verifying that much longer. */
const MAX_TOKEN_TTL_MS = 3_600_000;
const SETTINGS_POLL_MS = 5_000;

/**
 * The composition root: builds every part from config with `createX(deps)` factories and
 * wires them by hand. Nothing below reads `process.env` or reaches for a global.
 */
export async function startGateway({ config, logger, roles }: GatewayOptions): Promise<Gateway> {
  const adminToken = resolveAdminToken(config.auth, logger);
  const ring = loadKeyRing(config.vault, logger);
  const db = await connectAndMigrate(config.database, logger);
  const metrics = createMetrics();
  const checks = createBundleChecks(config.policy);
  const policy = createPolicyEngine({ logger, required: REQUIRED_ENTRYPOINTS, ...checks });
  policy.onActivate((info) => {
    metrics.bundleInfo.reset();
    metrics.bundleInfo.set({ bundle: BUNDLE_NAME, revision: info.revision, digest: info.digest }, 1);
    metrics.bundleActivatedSeconds.set({ bundle: BUNDLE_NAME }, info.activatedAt.getTime() / 1000);
    metrics.bundleLoads.inc({ bundle: BUNDLE_NAME, outcome: 'activated', code: '' });
  });
  policy.onRefuse((error) => metrics.bundleLoads.inc({ bundle: BUNDLE_NAME, outcome: 'refused', code: error.code }));
  const decisionLog = createDecisionLog(db.knex, logger, config.decisionLog);
  const decisions = createDecisionService({ engine: policy, log: decisionLog, maskPaths: config.decisionLog.maskPaths, metrics });
  const notify = db.kind === 'postgres';
  const waker = createJobWaker();
  // Everything a dispatch decision depends on besides the job and the worker; a change lets
  // jobs denied before be asked about again at once.
  let settingsJson = '{}';
  const settings = createSettingsService({
    knex: db.knex,
    logger,
    notify,
    onChange: (all) => {
      const json = JSON.stringify(all);
      if (json === settingsJson) return;
      settingsJson = json;
      policy.setRuntimeData({ settings: all });
      waker.wake();
    },
  });
  await settings.refresh();
  const preferences = createPreferencesService({ knex: db.knex, logger, notify, onChange: () => waker.wake() });
  await preferences.refresh();
  policy.onActivate(() => waker.wake());
  const epoch = () => `${policy.status().active?.digest.slice(0, 16) ?? 'none'}:${createHash('sha256').update(settingsJson).digest('hex').slice(0, 12)}:${preferences.version()}`;
  const refreshRuntime = () => {
    const warn = (err: unknown) => logger.warn({ err: String((err as Error)?.message ?? err) }, 'runtime data refresh failed');
    settings.refresh().catch(warn);
    preferences.refresh().catch(warn);
  };
  let source: BundleSource | undefined = undefined; // set once the bundle source starts, below
  const runtimePoll = setInterval(refreshRuntime, SETTINGS_POLL_MS);
  runtimePoll.unref();
  const listener = listenChannels({
    url: config.database.url,
    logger,
    channels: {
      [SETTINGS_CHANNEL]: refreshRuntime,
      [PREFERENCES_CHANNEL]: refreshRuntime,
      [JOBS_CHANNEL]: (count) => waker.wake(count === undefined ? undefined : Number(count) || 1),
      // Another replica activated a new bundle: look at our own source now, not at the next poll.
      [BUNDLE_CHANNEL]: () => source?.refresh(),
    },
  });
  const keys = await createKeyStore({ knex: db.knex, logger, rotationMs: config.auth.keyRotationMs, maxTokenTtlMs: MAX_TOKEN_TTL_MS });
  const psks = createPskStore(db.knex);
  const workerTokens = createWorkerTokens({ keys, issuer: config.auth.issuer, ttlMs: config.auth.workerTokenTtlMs });
  const intervals = { ...config.workers, leaseTtlMs: config.jobs.leaseTtlMs };
  const workers = createWorkerService({
    knex: db.knex,
    logger,
    psks,
    tokens: workerTokens,
    throttle: createFailureThrottle(config.auth.pskFailureLimit, config.auth.pskFailureWindowMs),
    decisions,
    intervals,
  });
  const jobs = createJobService({ knex: db.knex, logger, waker, notify });
  const credentials = createCredentialStore({ knex: db.knex, ring, logger });
  const leases = createLeaseService({
    knex: db.knex,
    logger,
    waker,
    notify,
    decisions,
    preferences,
    epoch,
    metrics,
    leaseTtlMs: config.jobs.leaseTtlMs,
    candidates: config.jobs.claimCandidates,
    wakeFallbackMs: config.jobs.wakeFallbackMs,
    longPollMaxMs: config.jobs.longPollMaxMs,
    retry: { baseMs: config.jobs.retryBaseMs, maxMs: config.jobs.retryMaxMs },
  });
  const reaper = leases.startReaper(config.jobs.reaperIntervalMs);
  const audit = createAuditLog(db.knex, logger, config.audit);
  const toolAudit = createToolAudit(db.knex, logger, config.audit);
  const upstreamClient = createUpstreamClient({
    keys,
    issuer: config.auth.issuer,
    forwardTokenTtlMs: config.auth.forwardTokenTtlMs,
    timeoutMs: config.mcp.toolTimeoutMs,
    maxResponseBytes: config.mcp.maxResponseBytes,
    stdioEnv: Object.fromEntries(config.mcp.stdioEnv.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)])),
  });
  const agentTokens = createAgentTokens({ keys, issuer: config.auth.issuer, ttlMs: config.auth.workerTokenTtlMs });
  let upstreams;
  try {
    upstreams = parseUpstreams(config.mcp.upstreams);
  } catch (err) {
    await db.close();
    throw new StartupError((err as Error).message);
  }
  const ledger = createLedger({ knex: db.knex });
  // Set once the roles listen: with the egress role in this process, the control plane forwards to its real port.
  let egressUrl = config.egress.url ?? `http://127.0.0.1:${config.server.egressPort}`;
  const egress = createEgressService({
    knex: db.knex,
    logger,
    decisions,
    policy,
    audit,
    ledger,
    credentials,
    keys,
    issuer: config.auth.issuer,
    forwardTokenTtlMs: config.auth.forwardTokenTtlMs,
    providerUrls: Object.fromEntries(Object.entries(config.egress.providers).map(([name, p]) => [name, p.baseUrl])),
    call: {
      connectTimeoutMs: config.egress.connectTimeoutMs,
      idleTimeoutMs: config.egress.idleTimeoutMs,
      maxRetries: config.egress.maxRetries,
      maxRetryWaitMs: config.egress.maxRetryWaitMs,
    },
    reservationTtlMs: config.egress.reservationTtlMs,
    metrics,
  });
  const apiCalls = createApiCallGateway({
        knex: db.knex,
        logger,
        decisions,
        policy,
        audit,
        preferences,
        ledger,
        keys,
        issuer: config.auth.issuer,
        forwardTokenTtlMs: config.auth.forwardTokenTtlMs,
        egressUrl: () => egressUrl,
        region: config.egress.region,
        requestTimeoutMs: config.server.requestTimeoutMs,
        metrics,
        ...(roles.includes('egress') && config.egress.url === null && { local: egress }),
      });
  const egressReaper = egress.startReaper(config.egress.reaperIntervalMs);

  // A missing or bad bundle does not stop the process: /readyz reports it (503) and says why.
  source = startBundleSource(config.policy.bundle, {
    engine: policy,
    logger,
    token: config.policy.bundleToken,
    minDelayMs: config.policy.pollMinDelayMs,
    maxDelayMs: config.policy.pollMaxDelayMs,
    longPollTimeoutMs: config.policy.longPollTimeoutMs,
  });
  await source.ready;
  if (notify) {
    policy.onActivate((info) => {
      db.knex.raw('select pg_notify(?, ?)', [BUNDLE_CHANNEL, info.digest]).catch((err: unknown) => logger.warn({ err: String((err as Error)?.message ?? err) }, 'cannot announce the new bundle'));
    });
  }
  const health = createHealthService({ db, policy, readyCheckTimeoutMs: config.server.readyCheckTimeoutMs });

  const tokens: StaticToken[] = [{ token: adminToken, principal: { kind: 'admin', id: 'admin' } }];
  if (config.auth.bundleServiceToken) {
    tokens.push({ token: config.auth.bundleServiceToken, principal: { kind: 'bundle_reader', id: 'bundle-service' } });
  }
  const admin = bearerAuth(tokens, ['admin']);
  const bundleReader = bearerAuth(tokens, ['admin', 'bundle_reader']);
  const maxBodyBytes = config.server.maxBodyBytes;
  const refreshGauges = async () => {
    metrics.decisionLogPending.set(decisionLog.pending());
    const counts = (await db.knex('jobs').select('state').count({ n: '*' }).groupBy('state').catch(() => null)) as { state: string; n: string }[] | null;
    if (counts) setJobCounts(metrics, counts);
    else metrics.jobsByState.reset(); // unknown while the database is down: no series rather than zeros
  };

  const mounts: Record<Role, (router: Router) => void> = {
    control(router) {
      healthRoutes(router, health, 'control');
      metricsRoutes(router, metrics, refreshGauges);
      openApiRoutes(router);
      jwksRoutes(router, keys);
      router.use(['/v1/bundles'], bundleReader);
      bundleServiceRoutes(router, policy);
      router.use(['/v1/status', '/v1/settings', '/v1/data', '/v1/decisions', '/v1/jobs', '/v1/workers', '/v1/psks', '/v1/keys', '/v1/preferences', '/v1/credentials', '/v1/budgets', '/v1/audit'], admin);
      statusRoutes(router, policy, {
        decisionLog: () => ({ pending: decisionLog.pending() }),
        database: () => ({ kind: db.kind, target: db.target }),
      });
      settingsRoutes(router, settings, maxBodyBytes);
      decisionRoutes(router, { decisions, log: decisionLog, engine: policy, maxBodyBytes });
      preferencesRoutes(router, preferences, maxBodyBytes);
      keyAdminRoutes(router, keys);
      credentialRoutes(router, credentials, maxBodyBytes);
      budgetAndAuditRoutes(router, { ledger, audit, maxBodyBytes });
      workerAdminRoutes(router, { workers, psks, maxBodyBytes });
      jobAdminRoutes(router, jobs, { maxBodyBytes, defaults: { maxAttempts: config.jobs.defaultMaxAttempts, timeoutMs: config.jobs.defaultTimeoutMs } });
      // The Worker API (seed paths): PSK registration, then the worker JWT for everything else.
      const asWorker = workerAuth(workers);
      workerRoutes(router, asWorker, { workers, renew: (w, l) => leases.renew(w, l), parseLeases: parseLeaseRefs, intervals, maxBodyBytes });
      router.use(['/jobs', '/result'], asWorker);
      jobWorkerRoutes(router, leases, maxBodyBytes);
      // api.call (REST form): worker JWT for a leased job, or the orchestrator token (Option C).
      apiCallRoutes(router, apiCallerAuth(adminToken, workers), apiCalls, maxBodyBytes);
      agentTokenRoutes(router, asWorker, { knex: db.knex, tokens: agentTokens, maxBodyBytes });
    },
    mcp(router) {
      healthRoutes(router, health, 'mcp');
      metricsRoutes(router, metrics, refreshGauges);
      openApiRoutes(router);
      mcpRoutes(router, {
        knex: db.knex,
        logger,
        decisions,
        workers,
        apiCalls,
        upstreams,
        client: upstreamClient,
        audit: toolAudit,
        agentTokens,
        maxBodyBytes,
        maxArgumentBytes: config.mcp.maxArgumentBytes,
        metrics,
        discoveryTtlMs: config.mcp.discoveryTtlMs,
      });
    },
    egress(router) {
      healthRoutes(router, health, 'egress');
      metricsRoutes(router, metrics, refreshGauges);
      openApiRoutes(router);
      egressRoutes(router, egress, maxBodyBytes);
    },
  };

  const closeParts = async () => {
    source.close();
    keys.close();
    reaper.stop();
    egressReaper.stop();
    await upstreamClient.close();
    apiCalls.close();
    clearInterval(runtimePoll);
    waker.wake();
    await listener.close();
    await egress.settled();
    await decisionLog.close();
    await audit.close();
    await toolAudit.close();
    await db.close();
  };
  const listening: Listening[] = [];
  const routes: Partial<Record<Role, RegisteredRoute[]>> = {};
  try {
    for (const role of roles) {
      const app = createRoleApp(role, { logger, mount: mounts[role], maxBodyBytes: config.server.maxBodyBytes });
      routes[role] = registeredRoutes(app);
      const port = portOf(role, config.server);
      listening.push(
        await listen(role, app, config.server.host, port, config.server).catch((err: NodeJS.ErrnoException) => {
          throw new StartupError(`cannot listen on ${config.server.host}:${port} for the ${role} role: ${err.code ?? err.message}`);
        }),
      );
    }
    const egressListening = listening.find((l) => l.role === 'egress');
    if (egressListening && config.egress.url === null) egressUrl = `http://127.0.0.1:${egressListening.port}`;
  } catch (err) {
    await Promise.all(listening.map((l) => l.close(0)));
    await closeParts();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  return {
    listening,
    db,
    policy,
    decisions,
    decisionLog,
    settings,
    keys,
    preferences,
    psks,
    workers,
    jobs,
    leases,
    credentials,
    ledger,
    audit,
    toolAudit,
    egress,
    metrics,
    routes,
    stop() {
      stopping ??= (async () => {
        leases.close(); // long polls answer at once instead of holding the drain open
        await Promise.all(listening.map((l) => l.close(config.server.shutdownTimeoutMs)));
        await closeParts();
      })();
      return stopping;
    },
  };
}
