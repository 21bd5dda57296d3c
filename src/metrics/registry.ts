import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * The process's Prometheus registry, with Node's default process metrics. Each feature
 * registers its own metrics on it (`src/<feature>/metrics.ts`) when its module starts.
 */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'cynode_process_' });
  return registry;
}
