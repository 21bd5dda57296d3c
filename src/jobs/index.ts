export { claimJobs, dispatchInput, type LeasedJob } from './dispatch.js';
export { createLeaseService, type LeaseRef, type LeaseService, type LeaseStatus } from './lease.js';
export { releaseLeasesOf } from './release.js';
export { JOB_ADMIN_ROUTES, type JobAdminRouteDeps, JOB_WORKER_ROUTES, parseLeaseRefs } from './routes.js';
export { createJobService, type JobDetail, type JobService, type JobView } from './service.js';
export { JOBS_CHANNEL, type JobState, type ResultReport } from './types.js';
export { parseJobSpec, type JobSpec, type Requirements } from './validate.js';
export { createJobWaker, type JobWaker } from './wake.js';
