/** A periodic task started by {@link startPeriodic}. */
export interface Periodic {
  stop(): void;
}

/**
 * Runs `task` every `intervalMs`, never two runs at once: a tick that finds the previous run
 * still going is skipped. A failed run is passed to `onError` and the next tick runs again;
 * a run that succeeds calls `onSuccess` (e.g. to log that failures ended). The timer does not
 * keep the process alive.
 */
export function startPeriodic(
  task: () => Promise<unknown>,
  intervalMs: number,
  onError: (err: unknown) => void,
  onSuccess?: () => void,
): Periodic {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    task()
      .then(onSuccess, onError)
      .finally(() => (running = false));
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
