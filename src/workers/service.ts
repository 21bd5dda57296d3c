import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { ENTRYPOINTS } from '../policy/index.js';
import type { DecisionService } from '../decisions/index.js';
import { GatewayError } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import type { TlsIdentity } from '../server/tls.js';
import { type CapabilityReport, parseCapabilityReport, reportDigest } from './capabilities.js';
import type { PskStore } from './psks.js';
import type { FailureThrottle } from './throttle.js';
import type { WorkerTokens } from './tokens.js';
import type { Worker } from './types.js';

/** What `POST /register` answers. */
export interface Registration {
  node_id: string;
  token: string;
  token_type: 'Bearer';
  expires_at: string;
  poll_interval_ms: number;
  heartbeat_interval_ms: number;
  lease_ttl_ms: number;
  decision_id: string;
}

/** The registration request, as the route hands it over. */
export interface RegisterRequest {
  psk: string | undefined;
  report: unknown;
  source: string;
  /** A bearer token sent along: proof that this is the session holding the node id. */
  bearer: string | undefined;
  /** The verified client certificate of the connection (mutual TLS), for the policy as `input.subject.tls`. */
  tls?: TlsIdentity | undefined;
}

/** Registration, capability updates and worker lookups (the Worker API's identity half). */
export interface WorkerService {
  register(req: RegisterRequest): Promise<Registration>;
  /** The worker behind a token, checked against its current session. */
  authenticate(token: string): Promise<Worker>;
  /** The worker whose current session is `sessionId` (for tokens derived from a worker's, such as agent tokens). */
  session(nodeId: string, sessionId: string): Promise<Worker>;
  /** Applies a heartbeat: health, load, last seen; a changed capability report is re-admitted. */
  heartbeat(
    worker: Worker,
    update: { health?: unknown; load?: unknown; capabilities?: unknown; tls?: TlsIdentity | undefined },
  ): Promise<Worker>;
  list(): Promise<Worker[]>;
}

/** What the worker service needs: the database, PSKs, tokens, the registration throttle and the policy. */
export interface WorkerServiceDeps {
  knex: Knex;
  logger: Logger;
  psks: PskStore;
  tokens: WorkerTokens;
  throttle: FailureThrottle;
  decisions: DecisionService;
  intervals: { pollIntervalMs: number; heartbeatIntervalMs: number; leaseTtlMs: number; nodeHoldMs: number };
  now?: () => Date;
}

const WORKER_CACHE_MS = 1000;

interface Row {
  node_id: string;
  session_id: string;
  capabilities: CapabilityReport;
  capabilities_sha256: string;
  health: unknown;
  load: unknown;
  registered_at: Date;
  last_seen_at: Date;
  held_until: Date;
}

/** The worker rows this replica read lately, by node id, with when each was read. */
type WorkerCache = Map<string, { row: Row; at: number }>;

/** What the parts of the worker service share. */
interface Context {
  deps: WorkerServiceDeps;
  log: Logger;
  now: () => Date;
  cache: WorkerCache;
}

/** Remembers `row` as the current one of its node. */
function cached(ctx: Context, row: Row): Row {
  ctx.cache.set(row.node_id, { row, at: Date.now() });
  return row;
}

/** Asks the register policy about a capability report; a deny is a policy_denied error. */
async function admit(deps: WorkerServiceDeps, report: CapabilityReport, requestedBy: string, tls: TlsIdentity | undefined) {
  const subject = tls ? { ...report, tls } : report;
  const record = await deps.decisions.decide(ENTRYPOINTS.register, { action: 'register', subject }, requestedBy);
  if (!record.decision.allow) {
    throw new GatewayError('policy_denied', `registration of '${report.node_id}' denied: ${record.decision.reasons.join(', ')}`, {
      reasons: record.decision.reasons,
      decision_id: record.decisionId,
    });
  }
  return record;
}

/** The session a bearer token proves, when it is for `nodeId`; expired tokens still count. */
async function provenSession(deps: WorkerServiceDeps, bearer: string | undefined, nodeId: string): Promise<string | null> {
  if (!bearer) return null;
  const claims = await deps.tokens.verifyForRenewal(bearer, deps.intervals.nodeHoldMs).catch(() => null);
  return claims?.nodeId === nodeId ? claims.sessionId : null;
}

/** The PSK a registration presents, checked in turn per source address; failures are throttled. */
function verifyPsk(ctx: Context, req: RegisterRequest): Promise<string> {
  const { throttle, psks } = ctx.deps;
  return throttle.inTurn(req.source, async () => {
    const wait = throttle.retryAfterSeconds(req.source);
    if (wait > 0)
      throw new GatewayError('rate_limited', 'too many failed registrations from this address; try later', { retry_after_s: wait });
    const id = req.psk ? await psks.verify(req.psk) : null;
    if (!id) {
      throttle.recordFailure(req.source);
      ctx.log.warn({ source: req.source }, 'registration with an invalid or missing PSK');
      throw new GatewayError('psk_invalid', 'a valid pre-shared key is required in the X-Cynode-PSK header');
    }
    return id;
  });
}

/**
 * Stores a new session of `report.node_id`, unless another live session holds the node id
 * (one the bearer token did not prove), and records the capability report it came with.
 */
async function storeSession(
  ctx: Context,
  trx: Knex.Transaction,
  reg: { report: CapabilityReport; sessionId: string; proven: string | null; pskId: string; source: string; at: Date },
): Promise<void> {
  const { report, sessionId, at } = reg;
  const held = (await trx('workers').where({ node_id: report.node_id }).forUpdate().first()) as Row | undefined;
  if (held && new Date(held.held_until) > at && held.session_id !== reg.proven) {
    const retry = Math.ceil((new Date(held.held_until).getTime() - at.getTime()) / 1000);
    throw new GatewayError('node_id_taken', `node id '${report.node_id}' is held by another live session`, { retry_after_s: retry });
  }
  const row = {
    node_id: report.node_id,
    capabilities: JSON.stringify(report),
    capabilities_sha256: reportDigest(report),
    session_id: sessionId,
    psk_id: reg.pskId,
    source: reg.source,
    registered_at: at,
    last_seen_at: at,
    held_until: new Date(at.getTime() + ctx.deps.intervals.nodeHoldMs),
  };
  const [stored] = (await trx('workers').insert(row).onConflict('node_id').merge().returning('*')) as Row[];
  cached(ctx, stored!);
  await trx('capability_reports').insert({
    node_id: report.node_id,
    session_id: sessionId,
    report: row.capabilities,
    reason: 'registration',
    reported_at: at,
  });
}

/** `POST /register`: PSK, capability report admitted by policy, a new session and its token. */
async function register(ctx: Context, req: RegisterRequest): Promise<Registration> {
  const { deps } = ctx;
  const pskId = await verifyPsk(ctx, req);
  const report = parseCapabilityReport(req.report);
  const record = await admit(deps, report, `psk:${pskId}`, req.tls);
  const proven = await provenSession(deps, req.bearer, report.node_id);
  const sessionId = randomUUID();
  const at = ctx.now();
  await deps.knex.transaction((trx) => storeSession(ctx, trx, { report, sessionId, proven, pskId, source: req.source, at }));
  const { token, expiresAt } = await deps.tokens.issue(report.node_id, sessionId);
  ctx.log.info({ nodeId: report.node_id, pskId, source: req.source, renewed: proven !== null }, 'worker registered');
  return {
    node_id: report.node_id,
    token,
    token_type: 'Bearer',
    expires_at: expiresAt.toISOString(),
    poll_interval_ms: deps.intervals.pollIntervalMs,
    heartbeat_interval_ms: deps.intervals.heartbeatIntervalMs,
    lease_ttl_ms: deps.intervals.leaseTtlMs,
    decision_id: record.decisionId,
  };
}

/** The worker whose current session is `sessionId`, read through the cache. */
async function session(ctx: Context, nodeId: string, sessionId: string): Promise<Worker> {
  const hit = ctx.cache.get(nodeId);
  const row =
    hit && Date.now() - hit.at < WORKER_CACHE_MS
      ? hit.row
      : ((await ctx.deps.knex('workers').where({ node_id: nodeId }).first()) as Row | undefined);
  if (row && row !== hit?.row) cached(ctx, row);
  if (!row) throw new GatewayError('token_invalid', 'the worker token is not valid');
  if (row.session_id !== sessionId) throw new GatewayError('session_replaced', 'this node registered again; use the newer token');
  return toWorker(row);
}

/** A heartbeat: health, load, last seen; a changed capability report is admitted again and recorded. */
async function heartbeat(
  ctx: Context,
  worker: Worker,
  update: { health?: unknown; load?: unknown; capabilities?: unknown; tls?: TlsIdentity | undefined },
): Promise<Worker> {
  const at = ctx.now();
  const patch: Record<string, unknown> = {
    last_seen_at: at,
    held_until: new Date(at.getTime() + ctx.deps.intervals.nodeHoldMs),
    ...(update.health !== undefined && { health: JSON.stringify(update.health) }),
    ...(update.load !== undefined && { load: JSON.stringify(update.load) }),
  };
  let report: CapabilityReport | undefined;
  if (update.capabilities !== undefined) {
    report = parseCapabilityReport(update.capabilities);
    if (report.node_id !== worker.nodeId) throw new GatewayError('forbidden', 'a worker may only report its own node id');
    const digest = reportDigest(report);
    if (digest === worker.capabilitiesSha256) report = undefined;
    else {
      await admit(ctx.deps, report, `node:${worker.nodeId}`, update.tls);
      Object.assign(patch, { capabilities: JSON.stringify(report), capabilities_sha256: digest });
    }
  }
  const [row] = (await ctx.deps.knex.transaction(async (trx) => {
    if (report) {
      await trx('capability_reports').insert({
        node_id: worker.nodeId,
        session_id: worker.sessionId,
        report: JSON.stringify(report),
        reason: 'update',
        reported_at: at,
      });
    }
    return trx('workers').where({ node_id: worker.nodeId, session_id: worker.sessionId }).update(patch).returning('*');
  })) as Row[];
  if (!row) {
    ctx.cache.delete(worker.nodeId);
    throw new GatewayError('session_replaced', 'this node registered again; use the newer token');
  }
  cached(ctx, row);
  if (report) ctx.log.info({ nodeId: worker.nodeId }, 'capability report updated');
  return toWorker(row);
}

/** Creates the worker service: registration, authentication, heartbeats and the worker list. */
export function createWorkerService(deps: WorkerServiceDeps): WorkerService {
  // The worker behind each node id, read at most once a second per replica: every Worker API
  // call needs it. A registration or heartbeat here refreshes it at once; one on another
  // replica reaches this one within WORKER_CACHE_MS (a replaced session's token works that
  // much longer here, at most).
  const ctx: Context = { deps, log: deps.logger.child({ component: 'workers' }), now: deps.now ?? (() => new Date()), cache: new Map() };
  return {
    register: (req) => register(ctx, req),
    async authenticate(token) {
      const { nodeId, sessionId } = await deps.tokens.verify(token);
      return session(ctx, nodeId, sessionId);
    },
    session: (nodeId, sessionId) => session(ctx, nodeId, sessionId),
    heartbeat: (worker, update) => heartbeat(ctx, worker, update),
    async list() {
      const rows = (await deps.knex('workers').select('*').orderBy('node_id')) as Row[];
      return rows.map(toWorker);
    },
  };
}

/** The worker a row stands for, as the rest of the gateway sees it. */
function toWorker(r: Row): Worker {
  return {
    nodeId: r.node_id,
    sessionId: r.session_id,
    capabilities: r.capabilities,
    capabilitiesSha256: r.capabilities_sha256,
    health: r.health ?? null,
    load: r.load ?? null,
    registeredAt: new Date(r.registered_at).toISOString(),
    lastSeenAt: new Date(r.last_seen_at).toISOString(),
  };
}
