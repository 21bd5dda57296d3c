import { Gauge, type Registry } from 'prom-client';

/**
 * Registers `cynode_workers_quarantined`: the node ids under quarantine as this replica
 * knows them (its in-memory set, read at scrape time; no database round trip).
 */
export function createWorkerMetrics(registry: Registry, quarantined: () => number): Gauge {
  return new Gauge({
    name: 'cynode_workers_quarantined',
    help: 'Nodes under quarantine (their tokens and registrations are refused until released).',
    registers: [registry],
    collect() {
      this.set(quarantined());
    },
  });
}
