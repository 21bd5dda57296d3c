import type { Knex } from 'knex';
import { errorMessage } from '../lib/error-message.js';
import { createLogThrottle } from '../lib/log-throttle.js';
import { startPeriodic } from '../lib/periodic.js';
import type { Logger } from '../logging/index.js';
import { wakeAt } from './requeue.js';
import type { JobWaker } from './wake.js';

/** Jobs left waiting that one look wakes polls for, at most. */
const MAX_WAKE = 1000;

// How many queued jobs have been ready since before the cut (up to a bound), and when the next
// one that is not yet ready will be.
const QUEUE_STATE = `
  SELECT (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'queued' AND available_at <= ? LIMIT ${MAX_WAKE}) r)::int AS stale,
         (SELECT min(available_at) FROM jobs WHERE state = 'queued' AND available_at > ?) AS next`;

/**
 * The polling fallback of one replica, for the wakes no one sent here: a NOTIFY missed while
 * the listener was away, a job whose backoff ends on another replica's clock, a denial that
 * lapses with time. Every `intervalMs`, while polls wait, one query looks at the queue: jobs
 * ready for a whole interval and still queued (an announced job is leased within
 * milliseconds) wake polls for that many jobs, oldest waiting first, so each look reaches
 * other workers; the next job still in backoff wakes one poll when it is due. Waiting polls
 * then cost nothing while nothing is left behind, instead of a claim each per interval.
 */
export function startQueueWatch(deps: { knex: Knex; waker: JobWaker; logger: Logger; intervalMs: number }): { stop(): void } {
  const log = deps.logger.child({ component: 'queue-watch' });
  const failures = createLogThrottle(log);
  let scheduled: Date | undefined;
  const look = async () => {
    if (deps.waker.waiting() === 0) return;
    const at = new Date();
    const cut = new Date(at.getTime() - deps.intervalMs);
    const { rows } = (await deps.knex.raw(QUEUE_STATE, [cut, at])) as { rows: { stale: number; next: Date | string | null }[] };
    const { stale, next } = rows[0]!;
    if (stale > 0) deps.waker.wake(stale);
    const due = next === null ? undefined : new Date(next);
    // One timer per distinct instant: a later look that sees the same next job does not wake it twice.
    if (due && due.getTime() !== scheduled?.getTime()) {
      scheduled = due;
      wakeAt(deps.waker, due, 1);
    }
  };
  return startPeriodic(
    look,
    deps.intervalMs,
    (err) => failures.failure({ err: errorMessage(err) }, 'looking at the queue failed; retrying'),
    () => failures.recovered('looking at the queue works again'),
  );
}
