import type { CapabilityReport } from './capabilities.js';

/** A registered worker as the gateway holds it: who leases jobs, and what it can run. */
export interface Worker {
  nodeId: string;
  sessionId: string;
  capabilities: CapabilityReport;
  capabilitiesSha256: string;
  health: unknown;
  load: unknown;
  registeredAt: string;
  lastSeenAt: string;
  /** When the session ended before its token expired (the worker deregistered, or was quarantined). */
  sessionEndedAt: string | null;
  /** Set while the node is quarantined: its tokens and registrations are refused. */
  quarantine: { at: string; reason: string; by: string } | null;
}

/** A lease a worker names in a heartbeat or a result. */
export interface LeaseRef {
  job_id: string;
  lease_id: string;
}

/** What `POST /status` answers about the leases a worker named. */
export interface LeaseStatus {
  leases: { job_id: string; lease_id: string; lease_expires_at: string | null }[];
  cancelled: LeaseRef[];
  lost: (LeaseRef & { reason: 'expired' | 'reassigned' | 'finished' | 'unknown' })[];
}

/**
 * Extends the leases a heartbeat names and says which were cancelled or lost. The jobs
 * feature implements it; the worker routes receive it, so workers never import jobs.
 */
export type RenewLeases = (worker: Worker, leases: readonly LeaseRef[]) => Promise<LeaseStatus>;
