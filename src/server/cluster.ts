import cluster, { type Worker } from 'node:cluster';
import type { Logger } from '../logging/index.js';

/** What a worker reports once its listeners are bound. */
export interface WorkerReady {
  listening: { role: string; host: string; port: number }[];
  database: string;
  bundle: string | null;
}

/** Messages between the primary and its workers (the IPC channel of `node:cluster`). */
type ClusterMessage = { cynode: 'ready'; ready: WorkerReady } | { cynode: 'shutdown' };

/** How the primary runs its workers. */
export interface ClusterOptions {
  workers: number;
  logger: Logger;
  /** How long the workers' drain may take; past it plus `closeMarginMs` they are killed. */
  shutdownTimeoutMs: number;
  closeMarginMs: number;
}

/**
 * The primary of `serve --workers N`: forks N workers (each a full gateway replica on the same
 * ports; the primary hands them connections in turn), logs one `gateway ready` line once every
 * worker is listening, and on SIGTERM/SIGINT asks each to drain and waits for all. A worker
 * that ends on its own (a failed start, a crash) stops the others: the process exits 1 and its
 * supervisor restarts it whole, as it would a single process. Resolves with the exit code.
 */
export function runClusterPrimary(options: ClusterOptions): Promise<number> {
  const { logger } = options;
  const started = performance.now();
  const workers: Worker[] = [];
  const readies = new Map<number, WorkerReady>();
  let stopping = false;
  let failed = false;
  return new Promise<number>((resolve) => {
    const stopAll = (reason: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ reason, graceMs: options.shutdownTimeoutMs }, 'shutting down');
      for (const w of workers) send(w, { cynode: 'shutdown' });
      setTimeout(() => {
        logger.error('workers did not stop in time; killing them');
        for (const w of workers) w.process.kill('SIGKILL');
      }, options.shutdownTimeoutMs + options.closeMarginMs).unref();
    };
    const onExit = (worker: Worker, code: number | null, signal: string | null) => {
      workers.splice(workers.indexOf(worker), 1);
      if (code !== 0) failed = true;
      if (!stopping) {
        failed = true;
        logger.error({ worker: worker.id, code, signal }, 'a worker ended; stopping the gateway');
        stopAll('worker ended');
      }
      if (workers.length === 0) {
        if (!failed) logger.info('shutdown complete');
        logger.flush(() => resolve(failed ? 1 : 0));
      }
    };
    const onReady = (worker: Worker, ready: WorkerReady) => {
      readies.set(worker.id, ready);
      if (readies.size < options.workers || stopping) return;
      const first = [...readies.values()][0]!;
      const ports = (r: WorkerReady) => r.listening.map((l) => `${l.role}:${l.port}`).join(',');
      if ([...readies.values()].some((r) => ports(r) !== ports(first))) {
        failed = true;
        logger.error({ workers: [...readies.values()].map(ports) }, 'workers bound different ports');
        stopAll('workers disagree');
        return;
      }
      logger.info({ ...first, workers: options.workers, startupMs: Math.round(performance.now() - started) }, 'gateway ready');
    };
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        logger.warn({ signal }, 'second signal; exiting now');
        for (const w of workers) w.process.kill('SIGKILL');
        logger.flush(() => process.exit(1));
        return;
      }
      signalled = true;
      stopAll(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    for (let i = 0; i < options.workers; i++) {
      const worker = cluster.fork();
      workers.push(worker);
      worker.on('message', (m: ClusterMessage) => {
        if (m?.cynode === 'ready') onReady(worker, m.ready);
      });
      worker.on('exit', (code, signal) => onExit(worker, code, signal));
    }
  });
}

/**
 * The worker's side: tells the primary it is ready, and calls `onShutdown` when the primary
 * asks it to drain. A Ctrl-C reaches every process of the group; the primary coordinates, so a
 * worker ignores SIGINT. SIGTERM sent to one worker still drains it (and the primary then stops
 * the rest). `flushed` runs its callback once the worker's own log lines are written (a worker
 * logs synchronously: src/cli/main.ts), so its `worker ready` line is out before the primary's
 * `gateway ready`.
 */
export function joinCluster(ready: WorkerReady, onShutdown: () => void, flushed: (done: () => void) => void = (done) => done()): void {
  process.on('message', (m: ClusterMessage) => {
    if (m?.cynode === 'shutdown') onShutdown();
  });
  process.on('SIGINT', () => undefined);
  flushed(() => process.send?.({ cynode: 'ready', ready } satisfies ClusterMessage));
}

/** Whether this process is a worker of `serve --workers N`. */
export function isClusterWorker(): boolean {
  return cluster.isWorker;
}

/** Checks `--workers`: a whole number from 1 to 64. */
export function parseWorkerCount(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`--workers takes a whole number from 1 to 64, not '${raw}'`);
  return n;
}

function send(worker: Worker, message: ClusterMessage): void {
  if (worker.isConnected()) worker.send(message);
}
