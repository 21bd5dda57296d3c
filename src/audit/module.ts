import type { Core } from '../core/module.js';
import { errorMessage } from '../lib/error-message.js';
import { createLogThrottle } from '../lib/log-throttle.js';
import { startPeriodic } from '../lib/periodic.js';
import type { Lifecycle } from '../server/lifecycle.js';
import { createCheckpointer, type Checkpointer } from './checkpointer.js';
import { createCheckpointSink } from './sink.js';

/** A chained log whose buffer a final checkpoint must see written. */
interface Flushable {
  flush(): Promise<void>;
}

/**
 * Starts audit checkpoints: every `audit.checkpoints.intervalMs` (0: only at shutdown) and
 * once more at shutdown, after `logs` (the chained logs other modules own) have flushed, so
 * the last checkpoint covers the last row this replica wrote.
 */
export function startAuditCheckpoints(core: Core, logs: Flushable[], life: Lifecycle): Checkpointer {
  const settings = core.config.audit.checkpoints;
  const log = core.logger.child({ component: 'audit-checkpoints' });
  const sink = settings.sink ? createCheckpointSink(settings.sink) : null;
  const checkpointer = createCheckpointer({ knex: core.db.knex, keys: core.keys, sink, logger: core.logger });
  const failed = (err: unknown) => log.error({ err: errorMessage(err) }, 'audit checkpoint failed');
  // Each interval's checkpoint fails while the database is down: logged once per interval, and its end once.
  const failures = createLogThrottle(log, { level: 'error' });
  const periodic =
    settings.intervalMs > 0
      ? startPeriodic(
          () => checkpointer.checkpoint(),
          settings.intervalMs,
          (err) => failures.failure({ err: errorMessage(err) }, 'audit checkpoint failed'),
          () => failures.recovered('audit checkpoints work again'),
        )
      : undefined;
  life.add('audit checkpoints', async () => {
    periodic?.stop();
    await Promise.all([core.decisionLog, ...logs].map((l) => l.flush().catch(() => undefined)));
    await checkpointer.checkpoint().catch(failed);
    sink?.close();
  });
  return checkpointer;
}
