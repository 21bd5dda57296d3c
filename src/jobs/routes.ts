import type Router from '@koa/router';
import type { Context } from 'koa';
import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { readJson } from '../server/json-body.js';
import type { Worker } from '../workers/index.js';
import type { LeaseRef, LeaseService, ResultReport } from './lease.js';
import type { JobService } from './service.js';
import { JOB_STATES } from './types.js';
import { parseJobSpec } from './validate.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const STATES: readonly string[] = JOB_STATES;

/** Orchestrator routes (admin token): `POST /v1/jobs`, `GET /v1/jobs[/{id}]`, `POST /v1/jobs/{id}/cancel`. */
export function jobAdminRoutes(router: Router, jobs: JobService, opts: { maxBodyBytes: number; defaults: { maxAttempts: number; timeoutMs: number } }): void {
  router.post('/v1/jobs', async (ctx) => {
    const spec = parseJobSpec(await readJson(ctx, opts.maxBodyBytes), opts.defaults);
    const principal = ctx.state.principal as Principal;
    const answer = await jobs.submit(spec, ctx.get('idempotency-key') || undefined, principal.id);
    ctx.status = answer.status;
    if (answer.replayed) ctx.set('Idempotent-Replayed', 'true');
    ctx.body = answer.body;
  });
  router.get('/v1/jobs', async (ctx) => {
    const state = typeof ctx.query.state === 'string' ? ctx.query.state : undefined;
    if (state !== undefined && !STATES.includes(state)) throw new GatewayError('bad_request', `state must be one of ${STATES.join(', ')}`);
    const limit = ctx.query.limit === undefined ? 100 : Number(ctx.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new GatewayError('bad_request', 'limit must be an integer from 1 to 1000');
    ctx.body = { jobs: await jobs.list({ ...(state && { state }), limit }) };
  });
  router.get('/v1/jobs/:id', async (ctx) => {
    ctx.body = await jobs.get(ctx.params.id!);
  });
  router.post('/v1/jobs/:id/cancel', async (ctx) => {
    const principal = ctx.state.principal as Principal;
    ctx.body = await jobs.cancel(ctx.params.id!, principal.id);
  });
}

/** Worker routes (worker JWT): `GET /jobs`, `POST /jobs/poll`, `POST /result`. `POST /status` lives with the worker routes. */
export function jobWorkerRoutes(router: Router, leases: LeaseService, maxBodyBytes: number): void {
  const poll = async (ctx: Context, maxRaw: unknown, waitRaw: unknown) => {
    const maxJobs = optionalInt(maxRaw, 'max_jobs', 1, 1024);
    const waitMs = optionalInt(waitRaw, 'wait_ms', 0, 30_000) ?? 0;
    const aborted = new AbortController();
    ctx.req.once('close', () => aborted.abort());
    const jobs = await leases.poll(ctx.state.worker as Worker, { ...(maxJobs !== undefined && { maxJobs }), waitMs, signal: aborted.signal });
    ctx.body = { jobs };
  };
  router.get('/jobs', async (ctx) => {
    const num = (v: unknown) => (typeof v === 'string' && v !== '' ? Number(v) : v);
    await poll(ctx, num(ctx.query.max_jobs), num(ctx.query.wait_ms));
  });
  router.post('/jobs/poll', async (ctx) => {
    const body = ctx.request.length || ctx.get('transfer-encoding') ? await readJson(ctx, maxBodyBytes) : {};
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new GatewayError('bad_request', 'send {"max_jobs": n, "wait_ms": ms}');
    const { max_jobs, wait_ms, ...rest } = body as Record<string, unknown>;
    if (Object.keys(rest).length > 0) throw new GatewayError('bad_request', `unknown field '${Object.keys(rest)[0]}'`);
    await poll(ctx, max_jobs, wait_ms);
  });
  router.post('/result', async (ctx) => {
    ctx.body = await leases.result(ctx.state.worker as Worker, parseResult(await readJson(ctx, maxBodyBytes)));
  });
}

/** Validates the `jobs` list of a heartbeat: `[{job_id, lease_id}]`. */
export function parseLeaseRefs(raw: unknown): LeaseRef[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw) || raw.length > 1024) throw new GatewayError('bad_request', 'jobs must be a list of at most 1024 {job_id, lease_id}');
  return raw.map((r, i) => {
    const ref = r as Record<string, unknown>;
    if (!ref || typeof ref.job_id !== 'string' || typeof ref.lease_id !== 'string' || !UUID.test(ref.job_id) || !UUID.test(ref.lease_id)) {
      throw new GatewayError('bad_request', `jobs[${i}] must be {job_id, lease_id} with UUIDs`);
    }
    return { job_id: ref.job_id, lease_id: ref.lease_id };
  });
}

function parseResult(raw: unknown): ResultReport {
  const r = raw as Record<string, unknown>;
  if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new GatewayError('bad_request', 'send {job_id, lease_id, status, result | error}');
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
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) throw new GatewayError('bad_request', `${name} must be an integer from ${min} to ${max}`);
  return v as number;
}
