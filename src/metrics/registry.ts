import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { JOB_STATES } from '../jobs/types.js';

/** The gateway's Prometheus metrics, one registry per process, created by the composition root. */
export interface Metrics {
  registry: Registry;
  decisions: Counter<'entrypoint' | 'result'>;
  evalSeconds: Histogram<'entrypoint'>;
  bundleInfo: Gauge<'bundle' | 'revision' | 'digest'>;
  bundleActivatedSeconds: Gauge<'bundle'>;
  bundleAgeSeconds: Gauge<'bundle'>;
  bundleLoads: Counter<'bundle' | 'outcome' | 'code'>;
  decisionLogPending: Gauge;
  jobsByState: Gauge<'state'>;
  jobResults: Counter<'state'>;
  leaseExpiries: Counter;
  leasedJobs: Counter;
  egressCalls: Counter<'provider' | 'operation' | 'outcome' | 'code'>;
  egressSeconds: Histogram<'provider' | 'operation'>;
  egressSpendUsd: Counter<'provider'>;
  apiCalls: Counter<'caller' | 'provider' | 'outcome' | 'code'>;
  mcpToolCalls: Counter<'tool' | 'outcome'>;
}

/** Every job state, so `cynode_jobs` reports 0 for an empty state instead of dropping the series. */
export { JOB_STATES };

/** Sets `cynode_jobs` from per-state counts read at scrape time; a state with no row reads 0. */
export function setJobCounts(metrics: Metrics, counts: readonly { state: string; n: string | number }[]): void {
  metrics.jobsByState.reset();
  for (const state of JOB_STATES) metrics.jobsByState.set({ state }, 0);
  for (const c of counts) metrics.jobsByState.set({ state: c.state }, Number(c.n));
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'cynode_process_' });
  const bundleActivatedSeconds = new Gauge({
    name: 'cynode_bundle_activated_timestamp_seconds',
    help: 'When the active bundle was activated (Unix seconds); age = now - this.',
    labelNames: ['bundle'],
    registers: [registry],
  });
  return {
    registry,
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
    bundleInfo: new Gauge({
      name: 'cynode_bundle_info',
      help: 'The active bundle (value 1), labelled with its revision and digest.',
      labelNames: ['bundle', 'revision', 'digest'],
      registers: [registry],
    }),
    bundleActivatedSeconds,
    bundleAgeSeconds: new Gauge({
      name: 'cynode_bundle_age_seconds',
      help: 'Seconds since the active bundle was activated, computed at scrape time.',
      labelNames: ['bundle'],
      registers: [registry],
      async collect() {
        const now = Date.now() / 1000;
        this.reset();
        for (const v of (await bundleActivatedSeconds.get()).values) {
          this.set({ bundle: String(v.labels.bundle) }, Math.max(0, now - v.value));
        }
      },
    }),
    bundleLoads: new Counter({
      name: 'cynode_bundle_loads_total',
      help: 'Bundle activation attempts by outcome (activated, refused) and refusal code.',
      labelNames: ['bundle', 'outcome', 'code'],
      registers: [registry],
    }),
    decisionLogPending: new Gauge({
      name: 'cynode_decision_log_pending',
      help: 'Decisions buffered in memory, not yet written.',
      registers: [registry],
    }),
    jobsByState: new Gauge({
      name: 'cynode_jobs',
      help: 'Jobs by state (queue depth is state="queued"), read at scrape time.',
      labelNames: ['state'],
      registers: [registry],
    }),
    jobResults: new Counter({
      name: 'cynode_job_results_total',
      help: 'Accepted worker results by the state they moved the job to.',
      labelNames: ['state'],
      registers: [registry],
    }),
    leaseExpiries: new Counter({
      name: 'cynode_lease_expiries_total',
      help: 'Leases that lapsed (worker stopped renewing, or the attempt timed out).',
      registers: [registry],
    }),
    leasedJobs: new Counter({
      name: 'cynode_jobs_leased_total',
      help: 'Jobs handed to workers by polls.',
      registers: [registry],
    }),
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
      help: 'USD charged for api.call requests, from the providers\' usage and the price table.',
      labelNames: ['provider'],
      registers: [registry],
    }),
    apiCalls: new Counter({
      name: 'cynode_api_calls_total',
      help: 'api.call requests at the first gate (REST and MCP) by caller kind, provider, outcome (ok, denied, error) and error code.',
      labelNames: ['caller', 'provider', 'outcome', 'code'],
      registers: [registry],
    }),
    mcpToolCalls: new Counter({
      name: 'cynode_mcp_tool_calls_total',
      help: 'MCP tools/call requests by tool (unknown for a name not in the catalogue) and outcome (ok, denied, error).',
      labelNames: ['tool', 'outcome'],
      registers: [registry],
    }),
  };
}
