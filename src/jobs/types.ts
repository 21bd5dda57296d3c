import type { LeaseRef } from '../workers/types.js';
import type { Requirements } from './validate.js';

/**
 * Every state of a job, in lifecycle order: the one list the routes, the metrics and the
 * OpenAPI document name. `leased` may go back to `queued` (retry); the last four are final.
 */
export const JOB_STATES = ['queued', 'leased', 'succeeded', 'failed', 'dead_lettered', 'cancelled'] as const;

/** The state of a job; see {@link JOB_STATES}. */
export type JobState = (typeof JOB_STATES)[number];

/** The states a job never leaves: it is done, one way or another. */
export const TERMINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'dead_lettered', 'cancelled'];

/** A row of `jobs`, as the database returns it. */
export interface JobRow {
  id: string;
  task_id: string;
  user_id: string;
  project_id: string | null;
  group_id: string | null;
  requirements: Requirements;
  preferences: Record<string, unknown>;
  budget_usd: string | number | null;
  estimated_cost_usd: string | number;
  payload: Record<string, unknown>;
  priority: number;
  max_attempts: number;
  timeout_ms: number;
  preferred_node_id: string | null;
  state: JobState;
  attempts: number;
  available_at: Date;
  lease_id: string | null;
  leased_by: string | null;
  lease_expires_at: Date | null;
  attempt_deadline: Date | null;
  result: unknown;
  error: unknown;
  submitted_by: string;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

/** A row of `job_attempts`: one lease of a job. */
export interface AttemptRow {
  lease_id: string;
  job_id: string;
  attempt: number;
  node_id: string;
  decision_id: string;
  leased_at: Date;
  ended_at: Date | null;
  outcome: string | null;
  result_sha256: string | null;
  answer: unknown;
  error: unknown;
}

/** The NOTIFY channel that wakes long polls on every replica. */
export const JOBS_CHANNEL = 'cynode_jobs';

/** The NOTIFY channel on which every end of a lease is announced, with the node id that held it (migrations/*_notify_lease_end.ts). */
export const LEASES_CHANNEL = 'cynode_leases';

/** Null-safe Date → ISO string. */
export function iso(d: Date | string | null | undefined): string | null {
  return d === null || d === undefined ? null : new Date(d).toISOString();
}

/** PostgreSQL returns numeric columns as strings. */
export function num(v: string | number | null): number | null {
  return v === null ? null : Number(v);
}

/** A worker's result for one lease (`POST /result`). */
export interface ResultReport extends LeaseRef {
  status: 'succeeded' | 'failed';
  result?: unknown;
  error?: { code: string; message: string; retryable: boolean };
}
