/**
 * Counts failed registration attempts per source address in a sliding window; past the
 * limit the source is refused (429 with Retry-After) until its oldest failure ages out,
 * whether or not its next guess would have been right. Per replica: N replicas allow at
 * most N × limit guesses per window, still far from brute-forcing a 256-bit secret.
 */
export interface FailureThrottle {
  /** Seconds until `source` may try again, or 0 when it may try now. */
  retryAfterSeconds(source: string): number;
  recordFailure(source: string): void;
  /**
   * Runs `attempt` once every earlier attempt from `source` has settled, so a burst of
   * concurrent guesses is checked and counted one at a time instead of all passing the
   * limit before the first failure is recorded.
   */
  inTurn<T>(source: string, attempt: () => Promise<T>): Promise<T>;
}

/** Creates an in-memory throttle: `limit` failures per source within `windowMs`. */
export function createFailureThrottle(limit: number, windowMs: number, now: () => number = Date.now): FailureThrottle {
  const failures = new Map<string, number[]>();
  const queues = new Map<string, Promise<unknown>>();
  const recent = (source: string) => {
    const cutoff = now() - windowMs;
    const list = (failures.get(source) ?? []).filter((t) => t > cutoff);
    if (list.length === 0) failures.delete(source);
    else failures.set(source, list);
    return list;
  };
  // Forget idle sources so a scan of many addresses cannot grow the map without bound.
  const sweep = setInterval(() => {
    for (const source of failures.keys()) recent(source);
  }, windowMs);
  sweep.unref();
  return {
    retryAfterSeconds(source) {
      const list = recent(source);
      if (list.length < limit) return 0;
      return Math.max(1, Math.ceil((list[0]! + windowMs - now()) / 1000));
    },
    recordFailure(source) {
      failures.set(source, [...recent(source), now()]);
    },
    inTurn(source, attempt) {
      const run = (queues.get(source) ?? Promise.resolve()).then(attempt);
      const settled = run.catch(() => undefined);
      queues.set(source, settled);
      void settled.then(() => queues.get(source) === settled && queues.delete(source));
      return run;
    },
  };
}
