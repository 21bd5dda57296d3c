import type { Registry } from 'prom-client';
import type { Config } from '../config/index.js';
import { errorMessage } from '../lib/error-message.js';
import type { Logger } from '../logging/index.js';
import {
  BUNDLE_CHANNEL,
  BUNDLE_NAME,
  type BundleSource,
  createBundleChecks,
  createPolicyEngine,
  type PolicyEngine,
  REQUIRED_ENTRYPOINTS,
  startBundleSource,
} from '../policy/index.js';
import type { Database } from '../storage/index.js';
import { createBundleMetrics } from './bundle-metrics.js';

/** The policy engine with its bundle metrics: activations, refusals, the active revision. */
export function createMeteredEngine(config: Config['policy'], logger: Logger, registry: Registry): PolicyEngine {
  const metrics = createBundleMetrics(registry);
  const engine = createPolicyEngine({ logger, required: REQUIRED_ENTRYPOINTS, ...createBundleChecks(config) });
  engine.onActivate((info) => {
    metrics.bundleInfo.reset();
    metrics.bundleInfo.set({ bundle: BUNDLE_NAME, revision: info.revision, digest: info.digest }, 1);
    metrics.bundleActivatedSeconds.set({ bundle: BUNDLE_NAME }, info.activatedAt.getTime() / 1000);
    metrics.bundleLoads.inc({ bundle: BUNDLE_NAME, outcome: 'activated', code: '' });
  });
  engine.onRefuse((error) => metrics.bundleLoads.inc({ bundle: BUNDLE_NAME, outcome: 'refused', code: error.code }));
  return engine;
}

/**
 * Starts the bundle source (a file, or a bundle service URL) and waits for its first load. A
 * missing or bad bundle does not stop the process: `/readyz` reports it (503) and says why.
 * Once running, every activation is announced on NOTIFY so other replicas look at their own
 * source at once instead of at their next poll.
 */
export async function startPolicySource(
  config: Config['policy'],
  deps: { engine: PolicyEngine; db: Database; logger: Logger },
): Promise<BundleSource> {
  const source = startBundleSource(config.bundle, {
    engine: deps.engine,
    logger: deps.logger,
    token: config.bundleToken,
    minDelayMs: config.pollMinDelayMs,
    maxDelayMs: config.pollMaxDelayMs,
    longPollTimeoutMs: config.longPollTimeoutMs,
  });
  await source.ready;
  if (deps.db.kind === 'postgres') {
    deps.engine.onActivate((info) => {
      deps.db.knex
        .raw('select pg_notify(?, ?)', [BUNDLE_CHANNEL, info.digest])
        .catch((err: unknown) => deps.logger.warn({ err: errorMessage(err) }, 'cannot announce the new bundle'));
    });
  }
  return source;
}
