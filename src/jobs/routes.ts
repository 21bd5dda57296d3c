import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { isUuid } from '../lib/ids.js';
import { defineRoutes, type RouteContext } from '../server/route.js';
import type { Worker } from '../workers/index.js';
import type { LeaseRef, LeaseService } from './lease.js';
import type { ResultReport } from './types.js';
import type { JobService } from './service.js';
import { JOB_STATES } from './types.js';
import { parseJobSpec } from './validate.js';

const STATES: readonly string[] = JOB_STATES;

const CONTROL = ['control'] as const;

/** What the orchestrator's job routes need. */
export interface JobAdminRouteDeps {
  jobs: JobService;
  defaults: { maxAttempts: number; timeoutMs: number };
}

/** Orchestrator routes (admin token): `POST /v1/jobs`, `GET /v1/jobs[/{id}]`, `POST /v1/jobs/{id}/cancel`. */
export const JOB_ADMIN_ROUTES = defineRoutes<JobAdminRouteDeps>([
  {
    method: 'post',
    path: '/v1/jobs',
    roles: CONTROL,
    access: 'admin',
    summary: 'Submits a job (idempotent per Idempotency-Key).',
    body: { schema: 'JobSpec', handlerChecks: 'a job is refused field by field (422 job_invalid with details.errors)' },
    params: [
      {
        in: 'header',
        name: 'Idempotency-Key',
        schema: { type: 'string' },
        description: 'Required; a repeat returns the first answer with Idempotent-Replayed: true.',
        required: true,
      },
    ],
    ok: {
      201: {
        description: 'Queued; a repeat of the same key answers the first answer again, with Idempotent-Replayed: true',
        schema: 'Job',
      },
    },
    errors: ['job_invalid', 'idempotency_key_required', 'idempotency_in_flight', 'idempotency_key_reused'],
    db: true,
    async handler(ctx, { jobs, defaults }) {
      const spec = parseJobSpec(ctx.state.body, defaults);
      const principal = ctx.state.principal as Principal;
      const answer = await jobs.submit(spec, ctx.get('idempotency-key') || undefined, principal.id);
      ctx.status = answer.status;
      if (answer.replayed) ctx.set('Idempotent-Replayed', 'true');
      ctx.body = answer.body;
    },
  },
  {
    method: 'get',
    path: '/v1/jobs',
    roles: CONTROL,
    access: 'reader',
    summary: 'Jobs, newest first.',
    params: [
      { in: 'query', name: 'state', schema: { type: 'string', enum: [...STATES] }, description: 'Only this state.' },
      {
        in: 'query',
        name: 'limit',
        schema: { type: 'integer', minimum: 1, maximum: 1000 },
        description: 'At most this many (1-1000, default 100).',
      },
    ],
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, { jobs }) {
      const state = typeof ctx.query.state === 'string' ? ctx.query.state : undefined;
      if (state !== undefined && !STATES.includes(state))
        throw new GatewayError('bad_request', `state must be one of ${STATES.join(', ')}`);
      const limit = ctx.query.limit === undefined ? 100 : Number(ctx.query.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw new GatewayError('bad_request', 'limit must be an integer from 1 to 1000');
      ctx.body = { jobs: await jobs.list({ ...(state && { state }), limit }) };
    },
  },
  {
    method: 'get',
    path: '/v1/jobs/{id}',
    roles: CONTROL,
    access: 'reader',
    summary: 'A job, its attempts, and why it waits (last dispatch decision per node).',
    ok: { 200: { description: 'OK', schema: 'Job' } },
    errors: ['job_not_found'],
    db: true,
    async handler(ctx, { jobs }) {
      ctx.body = await jobs.get(ctx.params.id!);
    },
  },
  {
    method: 'post',
    path: '/v1/jobs/{id}/cancel',
    roles: CONTROL,
    access: 'admin',
    summary: 'Cancels a job.',
    ok: { 200: { description: 'Cancelled', schema: 'Job' } },
    errors: ['job_not_found', 'job_finished'],
    db: true,
    async handler(ctx, { jobs }) {
      const principal = ctx.state.principal as Principal;
      ctx.body = await jobs.cancel(ctx.params.id!, principal.id);
    },
  },
]);

async function poll(ctx: RouteContext, leases: LeaseService, maxRaw: unknown, waitRaw: unknown): Promise<void> {
  const maxJobs = optionalInt(maxRaw, 'max_jobs', 1, 1024);
  const waitMs = optionalInt(waitRaw, 'wait_ms', 0, 30_000) ?? 0;
  // The response's close, not the request's: the request closed already once its body was
  // read, so only this one says the worker went away while its poll waits. A poll whose worker
  // is gone must not lease a job to it.
  const aborted = new AbortController();
  ctx.res.once('close', () => aborted.abort());
  if (ctx.req.socket.destroyed) aborted.abort();
  const jobs = await leases.poll(ctx.state.worker as Worker, { ...(maxJobs !== undefined && { maxJobs }), waitMs, signal: aborted.signal });
  ctx.body = { jobs };
}

/** Worker routes (worker JWT): `GET /jobs`, `POST /jobs/poll`, `POST /result`. `POST /status` lives with the worker routes. */
export const JOB_WORKER_ROUTES = defineRoutes<LeaseService>([
  {
    method: 'get',
    path: '/jobs',
    roles: CONTROL,
    access: 'worker',
    summary: 'Leases up to max_jobs jobs, optionally long-polling.',
    params: [
      { in: 'query', name: 'max_jobs', schema: { type: 'integer', minimum: 1, maximum: 1024 }, description: 'At most this many jobs.' },
      {
        in: 'query',
        name: 'wait_ms',
        schema: { type: 'integer', minimum: 0, maximum: 30000 },
        description: 'Long poll: wait this long for work.',
      },
    ],
    ok: { 200: { description: 'Leased jobs', schema: 'LeasedJobs' } },
    errors: [],
    db: true,
    decides: true,
    async handler(ctx, leases) {
      const num = (v: unknown) => (typeof v === 'string' && v !== '' ? Number(v) : v);
      await poll(ctx, leases, num(ctx.query.max_jobs), num(ctx.query.wait_ms));
    },
  },
  {
    method: 'post',
    path: '/jobs/poll',
    roles: CONTROL,
    access: 'worker',
    summary: 'Leases jobs (the POST form of GET /jobs).',
    body: { schema: 'PollRequest', optional: true },
    ok: { 200: { description: 'Leased jobs', schema: 'LeasedJobs' } },
    errors: [],
    db: true,
    decides: true,
    async handler(ctx, leases) {
      const body = (ctx.state.body ?? {}) as { max_jobs?: unknown; wait_ms?: unknown };
      await poll(ctx, leases, body.max_jobs, body.wait_ms);
    },
  },
  {
    method: 'post',
    path: '/result',
    roles: CONTROL,
    access: 'worker',
    summary: "Reports a job's result: idempotent, fenced by the lease.",
    body: { schema: 'ResultReport' },
    ok: { 200: { description: 'Accepted (or the same answer again)', schema: 'Any' } },
    errors: ['job_not_found', 'job_not_owned', 'job_finished', 'lease_superseded', 'result_conflict'],
    db: true,
    async handler(ctx, leases) {
      ctx.body = await leases.result(ctx.state.worker as Worker, parseResult(ctx.state.body));
    },
  },
]);

/** Validates the `jobs` list of a heartbeat: `[{job_id, lease_id}]`. */
export function parseLeaseRefs(raw: unknown): LeaseRef[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw) || raw.length > 1024)
    throw new GatewayError('bad_request', 'jobs must be a list of at most 1024 {job_id, lease_id}');
  return raw.map((r, i) => {
    const ref = r as Record<string, unknown>;
    if (!ref || typeof ref.job_id !== 'string' || typeof ref.lease_id !== 'string' || !isUuid(ref.job_id) || !isUuid(ref.lease_id)) {
      throw new GatewayError('bad_request', `jobs[${i}] must be {job_id, lease_id} with UUIDs`);
    }
    return { job_id: ref.job_id, lease_id: ref.lease_id };
  });
}

function parseResult(raw: unknown): ResultReport {
  const r = raw as Record<string, unknown>;
  if (r === null || typeof r !== 'object' || Array.isArray(r))
    throw new GatewayError('bad_request', 'send {job_id, lease_id, status, result | error}');
  const [ref] = parseLeaseRefs([{ job_id: r.job_id, lease_id: r.lease_id }]);
  for (const key of Object.keys(r)) {
    if (!['job_id', 'lease_id', 'status', 'result', 'error'].includes(key)) throw new GatewayError('bad_request', `unknown field '${key}'`);
  }
  if (r.status === 'succeeded') {
    if (r.error !== undefined) throw new GatewayError('bad_request', 'a succeeded result carries no error');
    return { ...ref!, status: 'succeeded', result: r.result ?? null };
  }
  if (r.status !== 'failed') throw new GatewayError('bad_request', "status must be 'succeeded' or 'failed'");
  const e = r.error as Record<string, unknown> | undefined;
  if (!e || typeof e !== 'object' || typeof e.code !== 'string' || typeof e.message !== 'string' || typeof e.retryable !== 'boolean') {
    throw new GatewayError('bad_request', 'a failed result carries error {code, message, retryable}');
  }
  if (e.code.length > 128 || e.message.length > 4096) throw new GatewayError('bad_request', 'error code or message too long');
  return { ...ref!, status: 'failed', error: { code: e.code, message: e.message, retryable: e.retryable } };
}

function optionalInt(v: unknown, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max)
    throw new GatewayError('bad_request', `${name} must be an integer from ${min} to ${max}`);
  return v as number;
}
