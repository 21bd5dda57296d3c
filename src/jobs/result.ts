import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { canonicalJson } from '../lib/canonical-json.js';
import { createBatcher } from '../lib/batcher.js';
import type { JobMetrics } from './metrics.js';
import type { Worker } from '../workers/types.js';
import type { ResultReport } from './types.js';
import { backoffMs, notifyRequeue, type RetryBackoff, wakeAt } from './requeue.js';
import { type AttemptRow, iso, type JobRow } from './types.js';
import type { JobWaker } from './wake.js';

/** What accepting results needs. */
export interface ResultDeps {
  knex: Knex;
  waker: JobWaker;
  notify: boolean;
  retry: RetryBackoff;
  metrics?: JobMetrics;
}

/** A successful result on its way to the group commit. */
interface Success {
  report: ResultReport;
  nodeId: string;
  digest: string;
  answer: object;
}

/** What the careful path decided: the answer, when a requeued job is due again, and whether it was a replay. */
interface Settled {
  answer: unknown;
  requeued: Date | null;
  replay: boolean;
}

// Many workers' successful results in one statement, the rows as one JSON parameter; each
// row keeps its own fence (lease current, held by that worker, no result yet), so a batch
// never accepts what the one-by-one path would refuse. A JSON null result reads back as SQL
// NULL from the record set; coalesce keeps it the JSON null the careful path stores.
const CLOSE_SUCCEEDED = `
  WITH t AS (SELECT ?::timestamptz AS at),
       v AS (SELECT * FROM jsonb_to_recordset(?::jsonb) AS v(job_id uuid, lease_id uuid, node_id text, result jsonb, digest text, answer jsonb)),
       u AS (
         UPDATE jobs j SET state = 'succeeded', result = coalesce(v.result, 'null'::jsonb), error = NULL,
                           finished_at = (SELECT at FROM t), updated_at = (SELECT at FROM t)
           FROM v
          WHERE j.id = v.job_id AND j.lease_id = v.lease_id AND j.leased_by = v.node_id AND j.state = 'leased'
            AND EXISTS (SELECT 1 FROM job_attempts x WHERE x.lease_id = v.lease_id AND x.job_id = v.job_id AND x.result_sha256 IS NULL)
         RETURNING j.lease_id
       ), a AS (
         UPDATE job_attempts x SET outcome = 'succeeded', ended_at = (SELECT at FROM t), result_sha256 = v.digest, answer = v.answer
           FROM v JOIN u ON u.lease_id = v.lease_id
          WHERE x.lease_id = v.lease_id
         RETURNING x.lease_id
       )
  SELECT lease_id FROM a`;

/** The digest a result is remembered by: a repeat with the same digest is replayed, another is a conflict. */
function resultDigest(report: ResultReport): string {
  return createHash('sha256')
    .update(canonicalJson({ status: report.status, result: report.result ?? null, error: report.error ?? null }))
    .digest('hex');
}

/** Group-commits successful results; resolves true for each one whose job and attempt closed. */
function createSuccessCloser(knex: Knex, now: () => Date) {
  return createBatcher<Success, boolean>(async (items) => {
    // A lease twice in one batch (a worker repeating itself concurrently): only its first
    // result is tried here; the repeat goes the careful way and is replayed or refused.
    const first = new Set<string>();
    const unique = items.filter((i) => !first.has(i.report.lease_id) && first.add(i.report.lease_id));
    const rows = unique.map(({ report, nodeId, digest, answer }) => ({
      job_id: report.job_id,
      lease_id: report.lease_id,
      node_id: nodeId,
      result: report.result ?? null,
      digest,
      answer,
    }));
    const { rows: closed } = (await knex.raw(CLOSE_SUCCEEDED, [now(), JSON.stringify(rows)])) as { rows: { lease_id: string }[] };
    const done = new Set(closed.map((r) => r.lease_id));
    return items.map((i) => unique.includes(i) && done.has(i.report.lease_id));
  }, 256);
}

/** The job's next state after `report`: done, failed, dead-lettered, or queued again after a backoff. */
function resultPatch(job: JobRow, report: ResultReport, at: Date, retry: RetryBackoff): Partial<Record<keyof JobRow, unknown>> {
  if (report.status === 'succeeded') {
    return { state: 'succeeded', result: JSON.stringify(report.result ?? null), error: null, finished_at: at };
  }
  if (report.error?.retryable && job.attempts < job.max_attempts) {
    return {
      state: 'queued',
      error: JSON.stringify(report.error),
      available_at: new Date(at.getTime() + backoffMs(retry, job.attempts)),
      lease_id: null,
      leased_by: null,
      lease_expires_at: null,
    };
  }
  return { state: report.error?.retryable ? 'dead_lettered' : 'failed', error: JSON.stringify(report.error ?? null), finished_at: at };
}

/**
 * The careful path, inside `trx`: locks the attempt and the job, replays a repeated result,
 * refuses one that conflicts or comes too late (another worker's lease, a lapsed or
 * superseded lease, a cancelled job), and otherwise closes the attempt and moves the job on.
 */
async function settleResult(
  trx: Knex.Transaction,
  deps: ResultDeps,
  now: () => Date,
  worker: Worker,
  report: ResultReport,
  digest: string,
): Promise<Settled> {
  const attempt = (await trx('job_attempts').where({ lease_id: report.lease_id }).forUpdate().first()) as AttemptRow | undefined;
  if (!attempt || attempt.job_id !== report.job_id) throw new GatewayError('job_not_found', 'no such lease of this job');
  if (attempt.node_id !== worker.nodeId) throw new GatewayError('job_not_owned', 'this lease belongs to another worker');
  if (attempt.result_sha256 !== null) {
    if (attempt.result_sha256 === digest) return { answer: attempt.answer, requeued: null, replay: true };
    throw new GatewayError('result_conflict', 'a different result was already accepted for this lease');
  }
  const job = (await trx('jobs').where({ id: report.job_id }).forUpdate().first()) as JobRow;
  if (job.lease_id !== report.lease_id) {
    throw new GatewayError('lease_superseded', 'this lease lapsed and the job was given to another lease; the result was not accepted', {
      state: job.state,
    });
  }
  if (job.state === 'cancelled')
    throw new GatewayError('job_finished', 'the job was cancelled; the result was not accepted', { state: job.state });
  if (job.state !== 'leased') {
    throw new GatewayError('lease_superseded', 'this lease lapsed; the result was not accepted', { state: job.state });
  }
  const at = now();
  const patch = resultPatch(job, report, at, deps.retry);
  const answer = {
    job_id: job.id,
    lease_id: report.lease_id,
    accepted: true,
    state: patch.state,
    ...(patch.state === 'queued' && { next_attempt_at: iso(patch.available_at as Date) }),
  };
  await trx('jobs')
    .where({ id: job.id })
    .update({ ...patch, updated_at: at });
  await trx('job_attempts')
    .where({ lease_id: report.lease_id })
    .update({
      outcome: report.status,
      ended_at: at,
      result_sha256: digest,
      answer: JSON.stringify(answer),
      error: report.error ? JSON.stringify(report.error) : null,
    });
  if (patch.state === 'queued') await notifyRequeue(trx, deps.notify, deps.waker.origin);
  return { answer, requeued: patch.state === 'queued' ? (patch.available_at as Date) : null, replay: false };
}

/**
 * `POST /result`: a successful result on a current lease goes through the group commit;
 * anything else (a failure, a repeat, a late or foreign result) takes the careful path.
 */
export function createResultHandler(deps: ResultDeps, now: () => Date): (worker: Worker, report: ResultReport) => Promise<unknown> {
  const closeSucceeded = createSuccessCloser(deps.knex, now);
  return async (worker, report) => {
    const digest = resultDigest(report);
    if (report.status === 'succeeded') {
      // The common case: the lease is current and this worker's, so the job and its attempt close together.
      const answer = { job_id: report.job_id, lease_id: report.lease_id, accepted: true, state: 'succeeded' };
      if (await closeSucceeded.submit({ report, nodeId: worker.nodeId, digest, answer })) {
        deps.metrics?.jobResults.inc({ state: 'succeeded' });
        return answer;
      }
    }
    const outcome = await deps.knex.transaction((trx) => settleResult(trx, deps, now, worker, report, digest));
    if (outcome.requeued) wakeAt(deps.waker, outcome.requeued, 1);
    if (!outcome.replay) deps.metrics?.jobResults.inc({ state: String((outcome.answer as { state: string }).state) });
    return outcome.answer;
  };
}
