import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { bearerToken } from '../lib/bearer.js';
import { defineRoutes } from '../server/route.js';
import { parsePskConstraints } from './psk-constraints.js';
import { peerIdentity } from '../server/tls.js';
import type { PskStore } from './psks.js';
import type { QuarantineService } from './quarantine.js';
import type { WorkerService } from './service.js';
import type { LeaseRef, LeaseStatus, Worker } from './types.js';

/** The header that carries the registration PSK; it is redacted from every log line. */
export const PSK_HEADER = 'x-cynode-psk';

/** What the Worker API's identity routes need. */
export interface WorkerRouteDeps {
  workers: WorkerService;
  /** Extends the leases a heartbeat names and says which were cancelled or lost. */
  renew: (worker: Worker, leases: LeaseRef[]) => Promise<LeaseStatus>;
  parseLeases: (raw: unknown) => LeaseRef[];
  intervals: { pollIntervalMs: number; heartbeatIntervalMs: number; leaseTtlMs: number };
}

const CONTROL = ['control'] as const;

/** `POST /register` (PSK), `POST /status` and `POST /deregister` (worker JWT): the Worker API's identity half. */
export const WORKER_ROUTES = defineRoutes<WorkerRouteDeps>([
  {
    method: 'post',
    path: '/register',
    roles: CONTROL,
    access: 'psk',
    summary: 'Registers a worker with a PSK and its capability report; answers a worker JWT.',
    // The report is validated field by field by registration itself (422 capability_invalid, details.errors).
    body: {
      schema: 'CapabilityReport',
      handlerChecks: 'registration refuses a report field by field (422 capability_invalid with details.errors), after the PSK check',
    },
    ok: { 200: { description: 'Registered', schema: 'Registration' } },
    errors: ['psk_invalid', 'rate_limited', 'capability_invalid', 'node_id_taken', 'node_quarantined', 'policy_denied'],
    db: true,
    decides: true,
    async handler(ctx, deps) {
      const bearer = bearerToken(ctx.get('authorization'));
      const tls = peerIdentity(ctx.req.socket);
      ctx.body = await deps.workers.register({
        psk: ctx.get(PSK_HEADER) || undefined,
        report: ctx.state.body,
        source: ctx.ip,
        bearer,
        tls,
      });
    },
  },
  {
    method: 'post',
    path: '/status',
    roles: CONTROL,
    access: 'worker',
    summary: 'Heartbeat: health and load; extends leases, names cancelled and lost jobs.',
    body: { schema: 'StatusReport' },
    ok: { 200: { description: 'Lease status', schema: 'StatusAnswer' } },
    errors: ['capability_invalid'],
    db: true,
    async handler(ctx, deps) {
      const body = ctx.state.body as Record<string, unknown>;
      const leases = deps.parseLeases(body.jobs);
      const worker = await deps.workers.heartbeat(ctx.state.worker as Worker, {
        health: body.health,
        load: body.load,
        capabilities: body.capabilities,
        tls: peerIdentity(ctx.req.socket),
      });
      const status = await deps.renew(worker, leases);
      ctx.body = {
        ...status,
        poll_interval_ms: deps.intervals.pollIntervalMs,
        heartbeat_interval_ms: deps.intervals.heartbeatIntervalMs,
        lease_ttl_ms: deps.intervals.leaseTtlMs,
      };
    },
  },
  {
    method: 'post',
    path: '/deregister',
    roles: CONTROL,
    access: 'worker',
    summary: 'Clean exit: ends the session, requeues any lease still held, frees the node id at once.',
    ok: { 200: { description: 'Deregistered', schema: 'Any' } },
    errors: ['session_replaced'],
    db: true,
    async handler(ctx, deps) {
      const worker = ctx.state.worker as Worker;
      await deps.workers.deregister(worker);
      ctx.body = { node_id: worker.nodeId, deregistered: true };
    },
  },
]);

/** Admin routes: `GET /v1/workers`, quarantine and release, `POST|GET /v1/psks`, `DELETE /v1/psks/{id}`. */
export const WORKER_ADMIN_ROUTES = defineRoutes<{ workers: WorkerService; psks: PskStore; quarantine: QuarantineService }>([
  {
    method: 'get',
    path: '/v1/workers',
    roles: CONTROL,
    access: 'reader',
    summary: 'Registered workers with their capability reports.',
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, { workers }) {
      ctx.body = { workers: await workers.list() };
    },
  },
  {
    method: 'post',
    path: '/v1/workers/{node_id}/quarantine',
    roles: CONTROL,
    access: 'admin',
    summary: 'Quarantines a node: its session ends on every replica, its leases are requeued, it may not register until released.',
    body: { schema: 'Quarantine' },
    ok: { 200: { description: 'The worker, quarantined', schema: 'Any' } },
    errors: ['worker_not_found'],
    db: true,
    async handler(ctx, { quarantine }) {
      const { reason } = ctx.state.body as { reason: unknown };
      if (typeof reason !== 'string' || reason.trim() === '' || reason.length > 1024)
        throw new GatewayError('bad_request', 'reason must be a non-empty string of at most 1024 characters');
      const principal = ctx.state.principal as Principal;
      ctx.body = await quarantine.quarantine(ctx.params.node_id!, reason, principal.id);
    },
  },
  {
    method: 'post',
    path: '/v1/workers/{node_id}/release',
    roles: CONTROL,
    access: 'admin',
    summary: 'Releases a quarantined node: it may register again (its old session stays ended).',
    ok: { 200: { description: 'The worker, released', schema: 'Any' } },
    errors: ['worker_not_found'],
    db: true,
    async handler(ctx, { quarantine }) {
      const principal = ctx.state.principal as Principal;
      ctx.body = await quarantine.release(ctx.params.node_id!, principal.id);
    },
  },
  {
    method: 'post',
    path: '/v1/psks',
    roles: CONTROL,
    access: 'admin',
    summary: 'Creates a registration PSK (the secret is shown once), optionally scoped to node ids, labels and regions.',
    body: { schema: 'NewPsk' },
    ok: { 201: { description: 'The PSK with its secret', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, { psks }) {
      const body = ctx.state.body as { name: string; expires_at?: unknown; constraints?: unknown };
      let expiresAt: Date | null = null;
      if (body.expires_at !== undefined && body.expires_at !== null) {
        expiresAt = typeof body.expires_at === 'string' ? new Date(body.expires_at) : new Date(NaN);
        if (Number.isNaN(expiresAt.getTime()) || expiresAt <= new Date())
          throw new GatewayError('bad_request', 'expires_at must be an ISO 8601 time in the future');
      }
      const constraints = parsePskConstraints(body.constraints);
      const principal = ctx.state.principal as Principal;
      ctx.status = 201;
      ctx.set('Cache-Control', 'no-store');
      ctx.body = await psks.create({ name: body.name, expiresAt, createdBy: principal.id, constraints });
    },
  },
  {
    method: 'get',
    path: '/v1/psks',
    roles: CONTROL,
    access: 'reader',
    summary: 'PSK metadata.',
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, { psks }) {
      ctx.body = { psks: await psks.list() };
    },
  },
  {
    method: 'delete',
    path: '/v1/psks/{id}',
    roles: CONTROL,
    access: 'admin',
    summary: 'Revokes a PSK.',
    ok: { 200: { description: 'Revoked', schema: 'Any' } },
    errors: ['psk_not_found'],
    db: true,
    async handler(ctx, { psks }) {
      ctx.body = await psks.revoke(ctx.params.id!);
    },
  },
]);
