import { Counter, Histogram, type Registry } from 'prom-client';

/** What API Egress reports: calls at each gate by outcome and code, provider time, spend, soft limits crossed. */
export interface EgressMetrics {
  egressCalls: Counter<'provider' | 'operation' | 'outcome' | 'code'>;
  egressSeconds: Histogram<'provider' | 'operation'>;
  egressSpendUsd: Counter<'provider'>;
  apiCalls: Counter<'caller' | 'provider' | 'outcome' | 'code'>;
  budgetSoftLimits: Counter<'scope'>;
}

/** Registers the egress metrics on `registry` (one registry per gateway). */
export function createEgressMetrics(registry: Registry): EgressMetrics {
  return {
    egressCalls: new Counter({
      name: 'cynode_egress_calls_total',
      help: 'api.call requests at API Egress by provider, operation, outcome (ok, denied, error) and error code.',
      labelNames: ['provider', 'operation', 'outcome', 'code'],
      registers: [registry],
    }),
    egressSeconds: new Histogram({
      name: 'cynode_egress_provider_seconds',
      help: 'Provider call time (retries included) of api.call requests that reached the provider.',
      labelNames: ['provider', 'operation'],
      buckets: [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    egressSpendUsd: new Counter({
      name: 'cynode_egress_spend_usd_total',
      help: "USD charged for api.call requests, from the providers' usage and the price table.",
      labelNames: ['provider'],
      registers: [registry],
    }),
    apiCalls: new Counter({
      name: 'cynode_api_calls_total',
      help: 'api.call requests at the first gate (REST and MCP) by caller kind, provider, outcome (ok, denied, error) and error code.',
      labelNames: ['caller', 'provider', 'outcome', 'code'],
      registers: [registry],
    }),
    budgetSoftLimits: new Counter({
      name: 'cynode_budget_soft_limit_crossed_total',
      help: 'Budgets whose period spend reached their soft limit, by scope (once per budget and period, on the replica that raised the alert).',
      labelNames: ['scope'],
      registers: [registry],
    }),
  };
}
