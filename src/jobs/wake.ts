/**
 * Wakes long polls when work may have appeared: a job submitted or requeued here, a NOTIFY
 * from another replica, a setting or preference change that may turn a deny into an allow.
 */
export interface JobWaker {
  /** Resolves on the next wake, after `timeoutMs`, or when `signal` aborts, whichever comes first. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<void>;
  wake(): void;
  /** Long polls waiting right now. */
  waiting(): number;
}

export function createJobWaker(): JobWaker {
  const waiters = new Set<() => void>();
  return {
    wait(timeoutMs, signal) {
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          waiters.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        waiters.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    },
    wake() {
      for (const done of [...waiters]) done();
    },
    waiting: () => waiters.size,
  };
}
