import { randomUUID } from 'node:crypto';

/**
 * Wakes long polls when work may have appeared. New or requeued jobs wake waiting polls,
 * oldest first, until the jobs each woken poll asks for cover the jobs that appeared (not
 * all of them: fifty workers racing for one job is fifty claims for one lease); a poll
 * that was woken but could take nothing passes its wake on. A change that may turn denials
 * into allows (a setting, a preference, a bundle) wakes every poll.
 *
 * A wake that finds too few polls waiting (they are busy claiming) is not lost: it bumps
 * `missed()`, and a poll whose claim overlapped it claims again instead of waiting, since
 * its claim may have looked before those jobs were there.
 */
export interface JobWaker {
  /**
   * Resolves on a wake, after `timeoutMs`, or when `signal` aborts, whichever comes first;
   * true when woken. `want` is how many jobs the poll would take; `since`, a reading of
   * `missed()` taken before the poll's last claim: a wake missed since resolves true at once.
   */
  wait(timeoutMs: number, signal?: AbortSignal, options?: { want?: number; since?: number }): Promise<boolean>;
  /** Wakes polls that together want at least `count` jobs (every poll when omitted). */
  wake(count?: number): void;
  /** Counts wakes that found too few polls waiting; see `wait`. */
  missed(): number;
  /** Long polls waiting right now. */
  waiting(): number;
  /** This replica on the jobs channel: its own notices come back through LISTEN, and it has woken its polls already. */
  readonly origin: string;
}

/** One waiting poll: how many jobs it would take, and how to end its wait. */
interface Waiter {
  want: number;
  done: (woken: boolean) => void;
}

/** Creates the in-process waker; NOTIFY listeners call its `wake` for changes on other replicas. */
export function createJobWaker(): JobWaker {
  // Insertion order is waiting order: the longest-waiting poll is woken first.
  const waiters = new Set<Waiter>();
  let missed = 0;
  return {
    origin: randomUUID(),
    wait(timeoutMs, signal, options = {}) {
      if (options.since !== undefined && options.since !== missed) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const waiter: Waiter = {
          want: Math.max(1, options.want ?? 1),
          done: (woken: boolean) => {
            clearTimeout(timer);
            waiters.delete(waiter);
            signal?.removeEventListener('abort', onAbort);
            resolve(woken);
          },
        };
        const onAbort = () => waiter.done(false);
        const timer = setTimeout(() => waiter.done(false), timeoutMs);
        waiters.add(waiter);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
    wake(count = Infinity) {
      let left = count;
      for (const waiter of waiters) {
        if (left <= 0) return;
        left -= waiter.want;
        waiter.done(true);
      }
      if (left > 0) missed++;
    },
    missed: () => missed,
    waiting: () => waiters.size,
  };
}

/** The payload of a notice on the jobs channel: how many jobs appeared, then `noticeOrigin` of the replica that says so. */
export function jobsNotice(origin: string, count: number): string {
  return `${count}${noticeOrigin(origin)}`;
}

/** The tail of a notice that names its replica (SQL appends it to a count it computes). */
export function noticeOrigin(origin: string): string {
  return `@${origin}`;
}

/**
 * Applies a notice heard on the jobs channel: wakes polls for the jobs another replica
 * announced; skips this replica's own (its polls were woken when the jobs went in). No
 * payload (the listener reconnected and may have missed notices) wakes every poll.
 */
export function onJobsNotice(waker: JobWaker, payload: string | undefined): void {
  if (payload === undefined) return waker.wake();
  const at = payload.indexOf('@');
  if (at >= 0 && payload.slice(at + 1) === waker.origin) return;
  waker.wake(Number(at >= 0 ? payload.slice(0, at) : payload) || 1);
}
