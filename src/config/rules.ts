/**
 * Checks across keys that no single key's bounds can express. Each rule is a small named
 * function over the decoded Config; the loader runs them in order after every key is valid
 * and stops at the first problem.
 */
import type { Config } from './schema.js';

/** One cross-key check. */
export interface ConfigRule {
  /** What must hold, in words. */
  readonly name: string;
  /** The problem, naming the keys involved, or null when the config satisfies the rule. */
  readonly check: (config: Config) => string | null;
}

/** Every cross-key rule, in the order they are checked. */
export const RULES: readonly ConfigRule[] = [
  {
    name: 'bundle polling: the maximum delay is not below the minimum',
    check: ({ policy: { pollMinDelayMs: min, pollMaxDelayMs: max } }) =>
      max < min ? `'policy.pollMaxDelayMs' (${max}) must not be below 'policy.pollMinDelayMs' (${min})` : null,
  },
  {
    name: 'decision-log export: the maximum delay is not below the minimum',
    check: ({
      decisionLog: {
        export: { minDelayMs: min, maxDelayMs: max },
      },
    }) => (max < min ? `'decisionLog.export.maxDelayMs' (${max}) must not be below 'decisionLog.export.minDelayMs' (${min})` : null),
  },
  {
    name: 'job retries: the backoff cap is not below the base',
    check: ({ jobs: { retryBaseMs: base, retryMaxMs: max } }) =>
      max < base ? `'jobs.retryMaxMs' (${max}) must not be below 'jobs.retryBaseMs' (${base})` : null,
  },
  {
    name: 'leases outlive the heartbeat interval',
    check: ({ workers: { heartbeatIntervalMs: beat }, jobs: { leaseTtlMs: ttl } }) =>
      beat >= ttl
        ? `'workers.heartbeatIntervalMs' (${beat}) must be below 'jobs.leaseTtlMs' (${ttl}), or leases lapse between heartbeats`
        : null,
  },
  {
    name: 'TLS: a certificate and its key come together, and client certificates need HTTPS',
    check: ({ server: { tls } }) =>
      (tls.certFile === null) !== (tls.keyFile === null)
        ? `'server.tls.certFile' and 'server.tls.keyFile' must be set together`
        : tls.clientCaFile !== null && tls.certFile === null
          ? `'server.tls.clientCaFile' needs 'server.tls.certFile' and 'server.tls.keyFile' (client certificates need HTTPS)`
          : null,
  },
];
