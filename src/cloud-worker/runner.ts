import { errorMessage } from '../lib/error-message.js';
import type { Logger } from '../logging/index.js';
import { ApiError, WorkerClient } from './client.js';
import type { WorkerConfig } from './config.js';
import { execute, type JobOutcome, sleep } from './executors.js';

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

/** A heartbeat's answer, as far as the worker reads it. */
interface StatusAnswer {
  leases: { lease_id: string; lease_expires_at: string }[];
  cancelled: { lease_id: string }[];
  lost: { lease_id: string; reason: string }[];
}

/** One worker run: its client, the jobs it holds and its counters, shared by the steps below. */
interface Run {
  config: WorkerConfig;
  options: RunOptions;
  log: Logger;
  client: WorkerClient;
  maxConcurrency: number;
  running: Map<string, Running>;
  finished: number;
  started: number;
  /** Resolves whoever waits for a free slot (the poll loop, or the drain). */
  slotFreed: () => void;
}

/** Registers, retrying with backoff while the gateway is away or busy; false when stopped first. */
async function registerWithRetry(run: Run): Promise<boolean> {
  const { client, log, options } = run;
  for (let attempt = 0; ; attempt++) {
    try {
      await client.register();
      log.info({ orch: run.config.orchUrl }, 'registered');
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status < 500 && err.status !== 429 && err.status !== 409) throw err;
      const wait = err instanceof ApiError && err.retryAfterMs ? err.retryAfterMs : backoff(attempt);
      log.warn({ err: describe(err), waitMs: Math.round(wait) }, 'registration failed; retrying');
      await sleep(wait, options.signal).catch(() => undefined);
      if (options.signal?.aborted) return false;
    }
  }
}

/** Stops a job the worker holds (cancelled, lost, unrenewable, shutdown): it is aborted and posts no result. */
function stopJob(run: Run, r: Running | undefined, why: string): void {
  if (!r || r.dropped) return;
  r.dropped = why;
  r.abort.abort(new Error(why));
  run.log.warn({ jobId: r.jobId, why }, 'job stopped');
}

/** `POST /status`: renews the leases held, stops the jobs the gateway cancelled or took away. */
async function heartbeat(run: Run): Promise<void> {
  const listed = [...run.running.values()];
  try {
    const answer = await run.client.call<StatusAnswer>('/status', {
      method: 'POST',
      body: {
        health: { status: 'ok' },
        load: { active_jobs: run.running.size, max_concurrency: run.maxConcurrency },
        jobs: listed.map((r) => ({ job_id: r.jobId, lease_id: r.leaseId })),
      },
    });
    const byLease = new Map(listed.map((r) => [r.leaseId, r]));
    for (const l of answer.leases) {
      const r = byLease.get(l.lease_id);
      if (r) r.expiresAt = Date.parse(l.lease_expires_at);
    }
    for (const [list, why] of [
      [answer.cancelled, 'cancelled'],
      [answer.lost, 'lost'],
    ] as const) {
      for (const l of list) stopJob(run, byLease.get(l.lease_id), why);
    }
  } catch (err) {
    run.log.warn({ err: describe(err) }, 'heartbeat failed');
  }
  // A lease about to lapse without renewal is someone else's soon: stop before that.
  for (const r of run.running.values()) if (Date.now() > r.expiresAt - LEASE_SAFETY_MS) stopJob(run, r, 'lease_unrenewable');
}

/** Heartbeats every `heartbeat_interval_ms`, each after the last one ended; returns the stop. */
function startHeartbeats(run: Run): () => void {
  let beat: NodeJS.Timeout;
  const scheduleBeat = () => {
    beat = setTimeout(() => void heartbeat(run).finally(scheduleBeat), run.client.intervals.heartbeat_interval_ms);
  };
  scheduleBeat();
  return () => clearTimeout(beat);
}

/** `POST /result`, retried with backoff on 5xx, 429 and network errors; a refusal is logged and dropped. */
async function postResult(run: Run, r: Running, outcome: JobOutcome): Promise<void> {
  for (let attempt = 0; attempt < 8 && !r.dropped; attempt++) {
    try {
      await run.client.call('/result', { method: 'POST', body: { job_id: r.jobId, lease_id: r.leaseId, ...outcome } });
      return;
    } catch (err) {
      if (err instanceof ApiError && err.status < 500 && err.status !== 429) {
        run.log.warn({ jobId: r.jobId, code: err.code }, 'result refused');
        return;
      }
      await sleep(backoff(attempt)).catch(() => undefined);
    }
  }
}

/** Runs one leased job and posts its result, unless the job was stopped meanwhile; frees its slot. */
async function runJob(run: Run, job: LeasedJob): Promise<void> {
  const r: Running = {
    jobId: job.job_id,
    leaseId: job.lease_id,
    expiresAt: Date.parse(job.lease_expires_at),
    abort: new AbortController(),
    dropped: null,
  };
  run.running.set(r.leaseId, r);
  try {
    const outcome = await execute({
      jobId: job.job_id,
      taskId: job.task_id,
      payload: job.payload,
      client: run.client,
      signal: r.abort.signal,
      ...(run.config.agent && { agent: run.config.agent }),
    }).catch((err: unknown): JobOutcome => ({
      status: 'failed',
      error: { code: 'worker_error', message: describe(err), retryable: true },
    }));
    if (!r.dropped) await postResult(run, r, outcome);
  } finally {
    run.running.delete(r.leaseId);
    run.finished++;
    run.slotFreed();
  }
}

/** Long-polls for as many jobs as there are free slots and starts each, until the run stops. */
async function pollLoop(run: Run): Promise<void> {
  const { client, config, options } = run;
  const stopping = () => options.signal?.aborted === true || (options.maxJobs !== undefined && run.started >= options.maxJobs);
  let failures = 0;
  while (!stopping()) {
    const free = Math.min(run.maxConcurrency - run.running.size, (options.maxJobs ?? Infinity) - run.started);
    if (free <= 0) {
      await new Promise<void>((resolve) => (run.slotFreed = resolve));
      continue;
    }
    try {
      const { jobs } = await client.call<{ jobs: LeasedJob[] }>('/jobs/poll', {
        method: 'POST',
        body: { max_jobs: free, wait_ms: config.pollWaitMs },
        ...(options.signal && { signal: options.signal }),
      });
      failures = 0;
      for (const job of jobs) {
        run.started++;
        void runJob(run, job);
      }
      if (jobs.length === 0)
        await sleep(client.intervals.poll_interval_ms * (0.5 + Math.random() / 2), options.signal).catch(() => undefined);
    } catch (err) {
      const wait = err instanceof ApiError && err.retryAfterMs ? err.retryAfterMs : backoff(failures++);
      run.log.warn({ err: describe(err), waitMs: Math.round(wait) }, 'poll failed; backing off');
      await sleep(wait, options.signal).catch(() => undefined);
    }
  }
}

/** Lets running jobs finish, aborting whatever outlives the grace period. */
async function drain(run: Run): Promise<void> {
  const grace = setTimeout(() => run.running.forEach((r) => stopJob(run, r, 'shutdown')), run.options.graceMs ?? 30_000);
  while (run.running.size > 0) await new Promise<void>((resolve) => (run.slotFreed = resolve));
  clearTimeout(grace);
}

/**
 * The reference cloud worker: registers with its PSK and capability report, heartbeats its
 * leases, long-polls for as many jobs as it has free slots, runs them, posts results, and
 * backs off with jitter on every failure. A job whose lease it can no longer renew is
 * stopped by the worker itself. On the way out (done, or stopped and drained) it deregisters.
 * Resolves with the number of jobs finished.
 */
export async function runWorker(config: WorkerConfig, logger: Logger, options: RunOptions = {}): Promise<number> {
  const run: Run = {
    config,
    options,
    log: logger.child({ component: 'worker', nodeId: config.nodeId }),
    client: new WorkerClient(config.orchUrl, config.psk, config.report, config.transport),
    maxConcurrency: Number(config.report.max_concurrency),
    running: new Map(),
    finished: 0,
    started: 0,
    slotFreed: () => undefined,
  };
  if (!(await registerWithRetry(run))) return 0;
  const stopHeartbeats = startHeartbeats(run);
  await pollLoop(run);
  await drain(run);
  stopHeartbeats();
  // A clean exit frees the node id at once; a crash leaves it held until the hold lapses.
  await run.client.deregister().catch((err: unknown) => run.log.warn({ err: describe(err) }, 'deregistration failed'));
  run.client.close();
  run.log.info({ finished: run.finished }, 'worker done');
  return run.finished;
}

function describe(err: unknown): string {
  if (err instanceof ApiError) return `${err.status} ${err.code}`;
  return errorMessage(err);
}
