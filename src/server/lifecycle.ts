import { errorMessage } from '../lib/error-message.js';
import type { Logger } from '../logging/index.js';

/**
 * The parts a gateway has started, each with its stop. Modules add a stop the moment they
 * start something, so the one `stopAll` serves both a shutdown and a start that failed half
 * way: stops run in reverse start order, each once, and a failing stop does not keep the
 * others from running.
 */
export interface Lifecycle {
  /** Records what to run, at shutdown, to stop the part named `name`. */
  add(name: string, stop: () => unknown): void;
  /** Runs every recorded stop in reverse order; later calls wait for the first. */
  stopAll(): Promise<void>;
}

export function createLifecycle(logger: Logger): Lifecycle {
  const log = logger.child({ component: 'lifecycle' });
  const stops: { name: string; stop: () => unknown }[] = [];
  let stopping: Promise<void> | undefined;
  return {
    add(name, stop) {
      if (stopping) throw new Error(`cannot start ${name}: the gateway is stopping`);
      stops.push({ name, stop });
    },
    stopAll() {
      stopping ??= (async () => {
        for (const { name, stop } of stops.reverse()) {
          try {
            await stop();
          } catch (err) {
            log.warn({ part: name, err: errorMessage(err) }, 'stopping a part failed');
          }
        }
      })();
      return stopping;
    },
  };
}
