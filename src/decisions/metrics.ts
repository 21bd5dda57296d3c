import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** What the decision service counts: every decision by entrypoint and result, and its evaluation time. */
export interface DecisionMetrics {
  decisions: Counter<'entrypoint' | 'result'>;
  evalSeconds: Histogram<'entrypoint'>;
  decisionLogPending: Gauge;
}

export function createDecisionMetrics(registry: Registry): DecisionMetrics {
  return {
    decisions: new Counter({
      name: 'cynode_decisions_total',
      help: 'Policy decisions by entrypoint and result (allow, deny, error).',
      labelNames: ['entrypoint', 'result'],
      registers: [registry],
    }),
    evalSeconds: new Histogram({
      name: 'cynode_policy_eval_seconds',
      help: 'Wasm evaluation time per decision.',
      labelNames: ['entrypoint'],
      buckets: [5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 5e-3, 0.025],
      registers: [registry],
    }),
    decisionLogPending: new Gauge({
      name: 'cynode_decision_log_pending',
      help: 'Decisions buffered in memory, not yet written.',
      registers: [registry],
    }),
  };
}
