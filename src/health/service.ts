import { isGatewayError } from '../errors/index.js';
import type { BundleStatus, PolicyEngine } from '../policy/index.js';
import type { Database } from '../storage/index.js';

/** The readiness verdict: ready only with a reachable database AND an active, verified bundle. */
export interface Readiness {
  ready: boolean;
  database: { ok: boolean; kind: Database['kind']; error?: string };
  bundle: {
    ok: boolean;
    revision?: string;
    digest?: string;
    activatedAt?: string;
    lastError?: { code: string; message: string; at: string };
  };
}

/** Dependencies of the health service. */
export interface HealthDeps {
  db: Database;
  policy: PolicyEngine;
  readyCheckTimeoutMs: number;
}

/** Readiness checks shared by every role's `/readyz`. */
export interface HealthService {
  readiness(): Promise<Readiness>;
}

export function createHealthService(deps: HealthDeps): HealthService {
  return {
    async readiness() {
      const database = await checkDatabase(deps);
      const bundle = describeBundle(deps.policy.status());
      return { ready: database.ok && bundle.ok, database, bundle };
    },
  };
}

async function checkDatabase({ db, readyCheckTimeoutMs }: HealthDeps): Promise<Readiness['database']> {
  try {
    await db.ping(readyCheckTimeoutMs);
    return { ok: true, kind: db.kind };
  } catch (err) {
    return { ok: false, kind: db.kind, error: isGatewayError(err) ? err.message : 'database check failed' };
  }
}

function describeBundle(status: BundleStatus): Readiness['bundle'] {
  const lastError = status.lastError && {
    code: status.lastError.code,
    message: status.lastError.message,
    at: status.lastError.at.toISOString(),
  };
  if (!status.active) return { ok: false, ...(lastError && { lastError }) };
  return {
    ok: true,
    revision: status.active.revision,
    digest: status.active.digest,
    activatedAt: status.active.activatedAt.toISOString(),
    ...(lastError && { lastError }),
  };
}
