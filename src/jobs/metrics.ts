import { Counter, Gauge, type Registry } from 'prom-client';
import { JOB_STATES } from './types.js';

/** What the queue reports: depth by state (read at scrape time), results, lapsed leases, jobs handed out. */
export interface JobMetrics {
  jobsByState: Gauge<'state'>;
  jobResults: Counter<'state'>;
  leaseExpiries: Counter;
  leasedJobs: Counter;
}

export function createJobMetrics(registry: Registry): JobMetrics {
  return {
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
  };
}

/** Sets `cynode_jobs` from per-state counts read at scrape time; a state with no row reads 0. */
export function setJobCounts(metrics: JobMetrics, counts: readonly { state: string; n: string | number }[]): void {
  metrics.jobsByState.reset();
  for (const state of JOB_STATES) metrics.jobsByState.set({ state }, 0);
  for (const c of counts) metrics.jobsByState.set({ state: c.state }, Number(c.n));
}
