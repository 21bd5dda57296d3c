import { type AgentConfig, runAgent } from './agent.js';
import { ApiError, type WorkerClient } from './client.js';

/** The outcome of running one job: a result, or an error the gateway can retry or not. */
export type JobOutcome =
  { status: 'succeeded'; result: unknown } | { status: 'failed'; error: { code: string; message: string; retryable: boolean } };

/** What an executor gets: the job, the API client and a signal that fires when it must stop. */
export interface JobContext {
  jobId: string;
  taskId: string;
  payload: Record<string, unknown>;
  client: WorkerClient;
  signal: AbortSignal;
  /** How `agent` jobs run on this worker (its own configuration); absent: it runs none. */
  agent?: AgentConfig;
}

type Executor = (job: JobContext) => Promise<JobOutcome>;

const fail = (code: string, message: string, retryable: boolean): JobOutcome => ({ status: 'failed', error: { code, message, retryable } });

/**
 * The job kinds the reference worker runs, by `payload.kind`. Jobs stay portable: a kind
 * means the same on a local node and on a cloud worker.
 * - `echo`: returns `payload.input` after `payload.delay_ms` (a stand-in for local work).
 * - `api.call`: one provider call through the gateway's API Egress (`POST /v1/api/call`),
 *   with the job's lease; the worker never holds a provider key.
 * - `agent`: runs the worker's configured agent command against the gateway's drop-in model
 *   APIs with a fresh agent token for the job (`agent.ts`); `payload.input` is its stdin.
 * - `fail`: reports `payload.code` as a failure (`payload.retryable`), for drills of the
 *   retry and dead-letter paths.
 */
export const EXECUTORS: Record<string, Executor> = {
  async echo(job) {
    const delay = Number(job.payload.delay_ms ?? 0);
    if (delay > 0) await sleep(Math.min(delay, 3_600_000), job.signal);
    return { status: 'succeeded', result: { echo: job.payload.input ?? null } };
  },
  async 'api.call'(job) {
    const { provider, operation, params } = job.payload;
    try {
      const result = await job.client.call('/v1/api/call', {
        method: 'POST',
        body: { provider, operation, params, task_id: job.taskId, job_id: job.jobId },
        signal: job.signal,
      });
      return { status: 'succeeded', result };
    } catch (err) {
      if (err instanceof ApiError) return fail(err.code, err.message, err.status === 429 || err.status >= 500);
      throw err;
    }
  },
  agent: (job) => runAgent(job, job.agent),
  async fail(job) {
    return fail(
      String(job.payload.code ?? 'job_failed'),
      String(job.payload.message ?? 'the job failed as asked'),
      job.payload.retryable === true,
    );
  },
};

/** Runs a job by its kind; an unknown kind is a permanent failure, not a crash. */
export async function execute(job: JobContext): Promise<JobOutcome> {
  const kind = typeof job.payload.kind === 'string' ? job.payload.kind : '';
  const executor = Object.prototype.hasOwnProperty.call(EXECUTORS, kind) ? EXECUTORS[kind]! : undefined;
  if (!executor) return fail('unsupported_job_kind', `this worker cannot run jobs of kind '${kind}'`, false);
  return executor(job);
}

/** Resolves after `ms`, or rejects when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
