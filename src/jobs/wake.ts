/**
 * Wakes long polls when work may have appeared. A new or requeued job wakes as many waiting
 * polls as there are jobs, oldest first (not all of them: fifty workers racing for one job
 * is fifty claims for one lease); a poll that was woken but could take nothing passes its
 * wake on. A change that may turn denials into allows (a setting, a preference, a bundle)
 * wakes every poll.
 */
export interface JobWaker {
  /** Resolves on a wake, after `timeoutMs`, or when `signal` aborts, whichever comes first; true when woken. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /** Wakes up to `count` waiting polls (all of them when omitted). */
  wake(count?: number): void;
  /** Long polls waiting right now. */
  waiting(): number;
}

/** Creates the in-process waker; NOTIFY listeners call its `wake` for changes on other replicas. */
export function createJobWaker(): JobWaker {
  // Insertion order is waiting order: the longest-waiting poll is woken first.
  const waiters = new Set<(woken: boolean) => void>();
  return {
    wait(timeoutMs, signal) {
      return new Promise<boolean>((resolve) => {
        const done = (woken: boolean) => {
          clearTimeout(timer);
          waiters.delete(done);
          signal?.removeEventListener('abort', onAbort);
          resolve(woken);
        };
        const onAbort = () => done(false);
        const timer = setTimeout(() => done(false), timeoutMs);
        waiters.add(done);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
    wake(count = Infinity) {
      let left = count;
      for (const done of [...waiters]) {
        if (left-- <= 0) break;
        done(true);
      }
    },
    waiting: () => waiters.size,
  };
}
