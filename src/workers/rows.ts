import type { CapabilityReport } from './capabilities.js';
import type { Worker } from './types.js';

/** A `workers` row. */
export interface Row {
  node_id: string;
  session_id: string;
  psk_id: string;
  capabilities: CapabilityReport;
  capabilities_sha256: string;
  health: unknown;
  load: unknown;
  registered_at: Date;
  last_seen_at: Date;
  held_until: Date;
  session_ended_at: Date | null;
  quarantined_at: Date | null;
  quarantine_reason: string | null;
  quarantined_by: string | null;
}

/** The worker a row stands for, as the rest of the gateway sees it. */
export function toWorker(r: Row): Worker {
  return {
    nodeId: r.node_id,
    sessionId: r.session_id,
    capabilities: r.capabilities,
    capabilitiesSha256: r.capabilities_sha256,
    health: r.health ?? null,
    load: r.load ?? null,
    registeredAt: new Date(r.registered_at).toISOString(),
    lastSeenAt: new Date(r.last_seen_at).toISOString(),
    sessionEndedAt: r.session_ended_at === null ? null : new Date(r.session_ended_at).toISOString(),
    quarantine: r.quarantined_at
      ? { at: new Date(r.quarantined_at).toISOString(), reason: r.quarantine_reason ?? '', by: r.quarantined_by ?? '' }
      : null,
  };
}
