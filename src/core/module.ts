import { bearerAuth, type Principal, resolveAdminToken, type StaticToken } from '../auth/index.js';
import type { Config } from '../config/index.js';
import {
  createDecisionLog,
  createDecisionService,
  DECISION_ROUTES,
  type DecisionLog,
  type DecisionService,
  POLICY_ROUTES,
  type StatusSection,
} from '../decisions/index.js';
import { createKeyStore, KEY_ROUTES, KEYS_CHANNEL, type KeyStore } from '../keys/index.js';
import type { Logger } from '../logging/index.js';
import type { Registry } from 'prom-client';
import { createDecisionMetrics, type DecisionMetrics } from '../decisions/metrics.js';
import { createDecisionQueries } from '../decisions/query.js';
import { createRegistry } from '../metrics/index.js';
import { BUNDLE_CHANNEL, type BundleSource, type PolicyEngine } from '../policy/index.js';
import { PREFERENCE_ROUTES } from '../preferences/index.js';
import type { Authenticators } from '../server/app.js';
import type { Lifecycle } from '../server/lifecycle.js';
import { bindRoutes, type BoundRoute } from '../server/route.js';
import { SETTINGS_ROUTES } from '../settings/index.js';
import { connectAndMigrate, type Database } from '../storage/index.js';
import { type ChannelListener, listenChannels } from '../storage/listener.js';
import { createMeteredEngine, startPolicySource } from './policy.js';
import { type Runtime, startRuntime } from './runtime.js';

/** Tokens live at most this long; retired signing keys keep verifying that much longer. */
const MAX_TOKEN_TTL_MS = 3_600_000;

/** What every feature builds on: storage, keys, the policy engine, the one door to decisions, runtime data. */
export interface Core {
  config: Config;
  logger: Logger;
  adminToken: string;
  db: Database;
  /** The Prometheus registry; each module registers its own metrics on it. */
  registry: Registry;
  decisionMetrics: DecisionMetrics;
  keys: KeyStore;
  policy: PolicyEngine;
  decisionLog: DecisionLog;
  decisions: DecisionService;
  runtime: Runtime;
  /** Whether replicas can hear each other (PostgreSQL NOTIFY); the embedded database has one process. */
  notify: boolean;
  routes: BoundRoute[];
  /** The sections of `GET /v1/status`; a module started later adds its own. */
  statusSections: Record<string, StatusSection>;
  authenticators: Pick<Authenticators, 'admin' | 'reader' | 'bundleReader'>;
  /** The NOTIFY listener: modules add their channels with `listener.on`. */
  listener: ChannelListener;
}

/**
 * Starts the core: the admin token, the database (migrated), the metrics registry, the policy
 * engine and its decision log, runtime data, the signing keys and, last, the bundle source, so
 * that the first decision already runs on a verified bundle.
 */
export async function startCore(config: Config, logger: Logger, life: Lifecycle): Promise<Core> {
  const adminToken = resolveAdminToken(config.auth, logger);
  const db = await connectAndMigrate(config.database, logger);
  life.add('database', () => db.close());
  const registry = createRegistry();
  const decisionMetrics = createDecisionMetrics(registry);
  const policy = createMeteredEngine(config.policy, logger, registry);
  const decisionLog = createDecisionLog(db.knex, logger, config.decisionLog);
  life.add('decision log', () => decisionLog.close());
  const decisions = createDecisionService({
    engine: policy,
    log: decisionLog,
    maskPaths: config.decisionLog.maskPaths,
    metrics: decisionMetrics,
  });
  const notify = db.kind === 'postgres';
  const runtime = await startRuntime({ knex: db.knex, logger, engine: policy, notify }, life);
  // Listening starts before the rest, so a replica that cannot LISTEN says so (and polls) from its first moments.
  const bundle: { source?: BundleSource } = {}; // set once the source starts, below
  // Another replica activated a new bundle: look at our own source now, not at the next poll.
  const listener = listenChannels({
    url: config.database.url,
    logger,
    channels: { ...runtime.channels, [BUNDLE_CHANNEL]: () => bundle.source?.refresh() },
  });
  life.add('NOTIFY listener', () => listener.close());
  const keys = await createKeyStore({
    knex: db.knex,
    logger,
    rotationMs: config.auth.keyRotationMs,
    maxTokenTtlMs: MAX_TOKEN_TTL_MS,
    notify,
  });
  listener.on(KEYS_CHANNEL, () => void keys.sync());
  life.add('signing keys', () => keys.close());
  const source = await startPolicySource(config.policy, { engine: policy, db, logger });
  bundle.source = source;
  life.add('bundle source', () => source.close());

  const sections: Record<string, StatusSection> = {
    decisionLog: () => ({ pending: decisionLog.pending() }),
    database: () => ({ kind: db.kind, target: db.target }),
  };
  const routes = [
    ...bindRoutes(KEY_ROUTES, keys),
    ...bindRoutes(POLICY_ROUTES, { engine: policy, sections }),
    ...bindRoutes(SETTINGS_ROUTES, runtime.settings),
    ...bindRoutes(DECISION_ROUTES, { decisions, log: decisionLog, engine: policy, queries: createDecisionQueries(db.knex) }),
    ...bindRoutes(PREFERENCE_ROUTES, runtime.preferences),
  ];
  return {
    config,
    logger,
    adminToken,
    db,
    registry,
    decisionMetrics,
    keys,
    policy,
    decisionLog,
    decisions,
    runtime,
    notify,
    routes,
    statusSections: sections,
    authenticators: staticTokenAuthenticators(config.auth, adminToken),
    listener,
  };
}

function staticTokenAuthenticators(auth: Config['auth'], adminToken: string): Core['authenticators'] {
  const tokens: StaticToken[] = [{ token: adminToken, principal: { kind: 'admin', id: 'admin' } }];
  if (auth.bundleServiceToken) tokens.push({ token: auth.bundleServiceToken, principal: { kind: 'bundle_reader', id: 'bundle-service' } });
  if (auth.readerToken) tokens.push({ token: auth.readerToken, principal: { kind: 'reader', id: 'reader' } });
  const kinds = (...k: Principal['kind'][]) => k;
  return {
    admin: bearerAuth(tokens, kinds('admin')),
    reader: bearerAuth(tokens, kinds('admin', 'reader')),
    bundleReader: bearerAuth(tokens, kinds('admin', 'bundle_reader')),
  };
}
