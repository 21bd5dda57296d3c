import type Router from '@koa/router';
import type { Middleware } from 'koa';
import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { readJson } from '../server/json-body.js';
import type { PskStore } from './psks.js';
import type { WorkerService } from './service.js';
import type { LeaseRef, LeaseStatus, Worker } from './types.js';

/** The header that carries the registration PSK; it is redacted from every log line. */
export const PSK_HEADER = 'x-cynode-psk';

export interface WorkerRouteDeps {
  workers: WorkerService;
  /** Extends the leases a heartbeat names and says which were cancelled or lost. */
  renew: (worker: Worker, leases: LeaseRef[]) => Promise<LeaseStatus>;
  parseLeases: (raw: unknown) => LeaseRef[];
  intervals: { pollIntervalMs: number; heartbeatIntervalMs: number; leaseTtlMs: number };
  maxBodyBytes: number;
}

/** `POST /register` (PSK) and `POST /status` (worker JWT, behind `auth`). */
export function workerRoutes(router: Router, auth: Middleware, deps: WorkerRouteDeps): void {
  router.post('/register', async (ctx) => {
    const body = await readJson(ctx, deps.maxBodyBytes);
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'))?.[1];
    ctx.body = await deps.workers.register({ psk: ctx.get(PSK_HEADER) || undefined, report: body, source: ctx.ip, bearer });
  });
  router.post('/status', auth, async (ctx) => {
    const body = (await readJson(ctx, deps.maxBodyBytes)) as Record<string, unknown> | null;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new GatewayError('bad_request', 'send {health, load, jobs, capabilities?}');
    for (const key of Object.keys(body)) {
      if (!['health', 'load', 'jobs', 'capabilities'].includes(key)) throw new GatewayError('bad_request', `unknown field '${key}'`);
    }
    for (const key of ['health', 'load'] as const) {
      if (body[key] !== undefined && (body[key] === null || typeof body[key] !== 'object' || Array.isArray(body[key]))) {
        throw new GatewayError('bad_request', `${key} must be an object`);
      }
    }
    const leases = deps.parseLeases(body.jobs);
    const worker = await deps.workers.heartbeat(ctx.state.worker as Worker, { health: body.health, load: body.load, capabilities: body.capabilities });
    const status = await deps.renew(worker, leases);
    ctx.body = {
      ...status,
      poll_interval_ms: deps.intervals.pollIntervalMs,
      heartbeat_interval_ms: deps.intervals.heartbeatIntervalMs,
      lease_ttl_ms: deps.intervals.leaseTtlMs,
    };
  });
}

/** Admin routes: `GET /v1/workers`, `POST|GET /v1/psks`, `DELETE /v1/psks/{id}`. */
export function workerAdminRoutes(router: Router, deps: { workers: WorkerService; psks: PskStore; maxBodyBytes: number }): void {
  router.get('/v1/workers', async (ctx) => {
    ctx.body = { workers: await deps.workers.list() };
  });
  router.post('/v1/psks', async (ctx) => {
    const body = (await readJson(ctx, deps.maxBodyBytes)) as Record<string, unknown> | null;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new GatewayError('bad_request', 'send {name, expires_at?}');
    const name = body.name;
    if (typeof name !== 'string' || !/^[\w .:@-]{1,128}$/.test(name)) throw new GatewayError('bad_request', 'name must be 1-128 letters, digits, spaces or _.:@-');
    let expiresAt: Date | null = null;
    if (body.expires_at !== undefined && body.expires_at !== null) {
      expiresAt = typeof body.expires_at === 'string' ? new Date(body.expires_at) : new Date(NaN);
      if (Number.isNaN(expiresAt.getTime()) || expiresAt <= new Date()) throw new GatewayError('bad_request', 'expires_at must be an ISO 8601 time in the future');
    }
    const principal = ctx.state.principal as Principal;
    ctx.status = 201;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await deps.psks.create({ name, expiresAt, createdBy: principal.id });
  });
  router.get('/v1/psks', async (ctx) => {
    ctx.body = { psks: await deps.psks.list() };
  });
  router.delete('/v1/psks/:id', async (ctx) => {
    ctx.body = await deps.psks.revoke(ctx.params.id!);
  });
}
