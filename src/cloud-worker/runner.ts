import type { Logger } from '../logging/index.js';
import { ApiError, WorkerClient } from './client.js';
import type { WorkerConfig } from './config.js';
import { execute, type JobOutcome, sleep } from './executors.js';
import { errorMessage } from '../lib/error-message.js';

/** A job this worker holds. */
interface Running {
  jobId: string;
  leaseId: string;
  /** When the lease lapses unless a heartbeat renews it. */
  expiresAt: number;
  abort: AbortController;
  /** Set when the gateway said the job was cancelled or taken away: no result is posted. */
  dropped: string | null;
}

interface LeasedJob {
  job_id: string;
  lease_id: string;
  task_id: string;
  payload: Record<string, unknown>;
  lease_expires_at: string;
}

/** Options of one worker run. */
export interface RunOptions {
  /** Exit after this many jobs have finished (result posted or dropped); unlimited when absent. */
  maxJobs?: number;
  /** Stops the worker: no new polls; running jobs finish (or are aborted at `graceMs`). */
  signal?: AbortSignal;
  graceMs?: number;
}

/** Stop a job this long before its lease would lapse when heartbeats keep failing. */
const LEASE_SAFETY_MS = 1000;

/** Exponential backoff with full jitter: a random wait up to min(max, base·2^attempt). */
function backoff(attempt: number, baseMs = 250, maxMs = 15_000): number {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** attempt);
}

/**
 * The reference cloud worker: registers with its PSK and capability report, heartbeats its
 * leases, long-polls for as many jobs as it has free slots, runs them, posts results, and
 * backs off with jitter on every failure. A job whose lease it can no longer renew is
 * stopped by the worker itself. Resolves with the number of jobs finished.
 */
export async function runWorker(config: WorkerConfig, logger: Logger, options: RunOptions = {}): Promise<number> {
  const log = logger.child({ component: 'worker', nodeId: config.nodeId });
  const client = new WorkerClient(config.orchUrl, config.psk, config.report);
  const maxConcurrency = Number(config.report.max_concurrency);
  const running = new Map<string, Running>();
  let finished = 0;
  let started = 0;
  const stopping = () => options.signal?.aborted === true || (options.maxJobs !== undefined && started >= options.maxJobs);
  let slotFreed: () => void = () => undefined;

  for (let attempt = 0; ; attempt++) {
    try {
      await client.register();
      log.info({ orch: config.orchUrl }, 'registered');
      break;
    } catch (err) {
      if (err instanceof ApiError && err.status < 500 && err.status !== 429 && err.status !== 409) throw err;
      const wait = err instanceof ApiError && err.retryAfterMs ? err.retryAfterMs : backoff(attempt);
      log.warn({ err: describe(err), waitMs: Math.round(wait) }, 'registration failed; retrying');
      await sleep(wait, options.signal).catch(() => undefined);
      if (options.signal?.aborted) return 0;
    }
  }

  const heartbeat = async () => {
    const listed = [...running.values()];
    try {
      const answer = await client.call<{
        leases: { lease_id: string; lease_expires_at: string }[];
        cancelled: { lease_id: string }[];
        lost: { lease_id: string; reason: string }[];
      }>('/status', {
        method: 'POST',
        body: {
          health: { status: 'ok' },
          load: { active_jobs: running.size, max_concurrency: maxConcurrency },
          jobs: listed.map((r) => ({ job_id: r.jobId, lease_id: r.leaseId })),
        },
      });
      const byLease = new Map(listed.map((r) => [r.leaseId, r]));
      for (const l of answer.leases) {
        const r = byLease.get(l.lease_id);
        if (r) r.expiresAt = Date.parse(l.lease_expires_at);
      }
      for (const [list, why] of [[answer.cancelled, 'cancelled'], [answer.lost, 'lost']] as const) {
        for (const l of list) stop(byLease.get(l.lease_id), why);
      }
    } catch (err) {
      log.warn({ err: describe(err) }, 'heartbeat failed');
    }
    // A lease about to lapse without renewal is someone else's soon: stop before that.
    for (const r of running.values()) if (Date.now() > r.expiresAt - LEASE_SAFETY_MS) stop(r, 'lease_unrenewable');
  };
  const stop = (r: Running | undefined, why: string) => {
    if (!r || r.dropped) return;
    r.dropped = why;
    r.abort.abort(new Error(why));
    log.warn({ jobId: r.jobId, why }, 'job stopped');
  };
  let beat: NodeJS.Timeout;
  const scheduleBeat = () => {
    beat = setTimeout(() => void heartbeat().finally(scheduleBeat), client.intervals.heartbeat_interval_ms);
  };
  scheduleBeat();

  const postResult = async (r: Running, outcome: JobOutcome) => {
    for (let attempt = 0; attempt < 8 && !r.dropped; attempt++) {
      try {
        await client.call('/result', { method: 'POST', body: { job_id: r.jobId, lease_id: r.leaseId, ...outcome } });
        return;
      } catch (err) {
        if (err instanceof ApiError && err.status < 500 && err.status !== 429) {
          log.warn({ jobId: r.jobId, code: err.code }, 'result refused');
          return;
        }
        await sleep(backoff(attempt)).catch(() => undefined);
      }
    }
  };
  const run = async (job: LeasedJob) => {
    const r: Running = { jobId: job.job_id, leaseId: job.lease_id, expiresAt: Date.parse(job.lease_expires_at), abort: new AbortController(), dropped: null };
    running.set(r.leaseId, r);
    try {
      const outcome = await execute({ jobId: job.job_id, taskId: job.task_id, payload: job.payload, client, signal: r.abort.signal }).catch(
        (err: unknown): JobOutcome => ({ status: 'failed', error: { code: 'worker_error', message: describe(err), retryable: true } }),
      );
      if (!r.dropped) await postResult(r, outcome);
    } finally {
      running.delete(r.leaseId);
      finished++;
      slotFreed();
    }
  };

  let failures = 0;
  while (!stopping()) {
    const free = Math.min(maxConcurrency - running.size, (options.maxJobs ?? Infinity) - started);
    if (free <= 0) {
      await new Promise<void>((resolve) => (slotFreed = resolve));
      continue;
    }
    try {
      const { jobs } = await client.call<{ jobs: LeasedJob[] }>('/jobs/poll', { method: 'POST', body: { max_jobs: free, wait_ms: config.pollWaitMs }, ...(options.signal && { signal: options.signal }) });
      failures = 0;
      for (const job of jobs) {
        started++;
        void run(job);
      }
      if (jobs.length === 0) await sleep(client.intervals.poll_interval_ms * (0.5 + Math.random() / 2), options.signal).catch(() => undefined);
    } catch (err) {
      const wait = err instanceof ApiError && err.retryAfterMs ? err.retryAfterMs : backoff(failures++);
      log.warn({ err: describe(err), waitMs: Math.round(wait) }, 'poll failed; backing off');
      await sleep(wait, options.signal).catch(() => undefined);
    }
  }

  // Drain: let running jobs finish, aborting whatever outlives the grace period.
  const grace = setTimeout(() => running.forEach((r) => stop(r, 'shutdown')), options.graceMs ?? 30_000);
  while (running.size > 0) await new Promise<void>((resolve) => (slotFreed = resolve));
  clearTimeout(grace);
  clearTimeout(beat!);
  log.info({ finished }, 'worker done');
  return finished;
}

function describe(err: unknown): string {
  if (err instanceof ApiError) return `${err.status} ${err.code}`;
  return errorMessage(err);
}
