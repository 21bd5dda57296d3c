import { Counter, Gauge, type Registry } from 'prom-client';
import { JOB_STATES } from './types.js';

/** What the queue reports: depth by state (read at scrape time), results, lapsed leases, jobs handed out, polls waiting. */
export interface JobMetrics {
  jobsByState: Gauge<'state'>;
  jobResults: Counter<'state'>;
  leaseExpiries: Counter;
  leasedJobs: Counter;
  claims: Counter<'found'>;
  pollsWaiting: Gauge;
}

/** Creates the queue's metrics; `waiting` counts the long polls waiting for work on this replica. */
export function createJobMetrics(registry: Registry, waiting: () => number): JobMetrics {
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
    claims: new Counter({
      name: 'cynode_job_claims_total',
      help: 'Claims polls made (one transaction each), by whether they found jobs to lease (found="jobs") or not ("none").',
      labelNames: ['found'],
      registers: [registry],
    }),
    pollsWaiting: new Gauge({
      name: 'cynode_job_polls_waiting',
      help: 'Long polls on this replica waiting for work right now.',
      registers: [registry],
      collect() {
        this.set(waiting());
      },
    }),
  };
}

/** Sets `cynode_jobs` from per-state counts read at scrape time; a state with no row reads 0. */
export function setJobCounts(metrics: JobMetrics, counts: readonly { state: string; n: string | number }[]): void {
  metrics.jobsByState.reset();
  for (const state of JOB_STATES) metrics.jobsByState.set({ state }, 0);
  for (const c of counts) metrics.jobsByState.set({ state: c.state }, Number(c.n));
}
