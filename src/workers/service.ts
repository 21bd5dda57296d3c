import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { ENTRYPOINTS } from '../policy/index.js';
import type { DecisionService } from '../decisions/index.js';
import { GatewayError } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import type { TlsIdentity } from '../server/tls.js';
import { type CapabilityReport, parseCapabilityReport, reportDigest } from './capabilities.js';
import type { PskStore, PskSubject } from './psks.js';
import type { QuarantineSet } from './quarantine-set.js';
import { createSessionCache, type SessionCache, type SessionEntry } from './session-cache.js';
import type { FailureThrottle } from './throttle.js';
import type { WorkerTokens } from './tokens.js';
import { type Row, toWorker } from './rows.js';
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
  /** Ends `worker`'s session (a clean exit): its tokens stop working, its leases are requeued, its node id is free at once. */
  deregister(worker: Worker): Promise<void>;
  /** Drops this replica's cached row of a node, so the next call reads it (another replica changed it). */
  forget(nodeId: string): void;
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
  /** Node ids under quarantine, as this replica knows them (refreshed by NOTIFY and by poll). */
  quarantined: QuarantineSet;
  /** Requeues at once the jobs leased by these node ids (the job queue's); answers how many. */
  releaseLeases: (nodeIds: readonly string[]) => Promise<number>;
  /** Tells every replica that a node's session ended (`ended:<node id>` on the workers channel). */
  announce: (trx: Knex | Knex.Transaction, event: string) => Promise<void>;
  now?: () => Date;
}

/** What the parts of the worker service share. */
interface Context {
  deps: WorkerServiceDeps;
  log: Logger;
  now: () => Date;
  /** The worker rows this replica read or wrote lately (see session-cache.ts). */
  cache: SessionCache;
  /**
   * Per node, the sessions the stored row showed quarantined. A quarantine ends the session and
   * a session never comes back, so these stay refused with no further read.
   */
  refused: Map<string, Set<string>>;
}

/** Asks the register policy about a capability report; a deny is a policy_denied error. */
async function admit(
  deps: WorkerServiceDeps,
  report: CapabilityReport,
  psk: PskSubject | null,
  requestedBy: string,
  tls: TlsIdentity | undefined,
) {
  const subject = tls ? { ...report, psk, tls } : { ...report, psk };
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

/** The PSK a registration presents, checked in turn per source address; failures are throttled across replicas. */
async function verifyPsk(ctx: Context, req: RegisterRequest): Promise<PskSubject> {
  const { throttle, psks } = ctx.deps;
  const { value: psk, retryAfterSeconds: wait } = await throttle.attempt(req.source, async () => (req.psk ? psks.verify(req.psk) : null));
  if (wait > 0)
    throw new GatewayError('rate_limited', 'too many failed registrations from this address; try later', { retry_after_s: wait });
  if (!psk) {
    ctx.log.warn({ source: req.source }, 'registration with an invalid or missing PSK');
    throw new GatewayError('psk_invalid', 'a valid pre-shared key is required in the X-Cynode-PSK header');
  }
  return psk;
}

/**
 * Stores a new session of `report.node_id`, unless another live session holds the node id
 * (one the bearer token did not prove), and records the capability report it came with;
 * answers the stored row. This replica's cache holds it from the write on, so the older
 * session is refused here at once.
 */
async function storeSession(
  ctx: Context,
  trx: Knex.Transaction,
  reg: { report: CapabilityReport; sessionId: string; proven: string | null; pskId: string; source: string; at: Date },
): Promise<Row> {
  const { report, sessionId, at } = reg;
  const held = (await trx('workers').where({ node_id: report.node_id }).forUpdate().first()) as Row | undefined;
  // The stored row, not this replica's in-memory set, decides at registration: a release made a
  // moment ago through another replica holds at once.
  if (held?.quarantined_at) throw quarantinedError(report.node_id);
  if (held && new Date(held.held_until) > at && held.session_ended_at === null && held.session_id !== reg.proven) {
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
    session_ended_at: null,
  };
  const [stored] = (await trx('workers').insert(row).onConflict('node_id').merge().returning('*')) as Row[];
  ctx.cache.store(stored!);
  await trx('capability_reports').insert({
    node_id: report.node_id,
    session_id: sessionId,
    report: row.capabilities,
    reason: 'registration',
    reported_at: at,
  });
  return stored!;
}

/** `POST /register`: PSK, capability report admitted by policy, a new session and its token. */
async function register(ctx: Context, req: RegisterRequest): Promise<Registration> {
  const { deps } = ctx;
  const psk = await verifyPsk(ctx, req);
  const pskId = psk.id;
  const report = parseCapabilityReport(req.report);
  const record = await admit(deps, report, psk, `psk:${pskId}`, req.tls);
  const proven = await provenSession(deps, req.bearer, report.node_id);
  const sessionId = randomUUID();
  const at = ctx.now();
  const stored = await deps.knex.transaction((trx) => storeSession(ctx, trx, { report, sessionId, proven, pskId, source: req.source, at }));
  // Again once committed: a read that began before the commit saw the older row and must not be remembered.
  ctx.cache.store(stored);
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

/**
 * The stored row of a node this replica's set holds as quarantined. A session seen refused
 * before is refused in memory, no round trip: a quarantine reaches every replica's set by
 * NOTIFY. Any other session can only have registered after a release this replica has not
 * heard of yet, so the stored row decides: a quarantined row once per session, a released
 * one on each call until the set hears of the release.
 */
async function quarantinedRow(ctx: Context, nodeId: string, sessionId: string): Promise<SessionEntry | undefined> {
  if (ctx.refused.get(nodeId)?.has(sessionId)) throw quarantinedError(nodeId);
  const entry = await ctx.cache.read(nodeId);
  if (entry?.row.quarantined_at) {
    ctx.refused.set(nodeId, (ctx.refused.get(nodeId) ?? new Set()).add(sessionId));
    throw quarantinedError(nodeId);
  }
  return entry;
}

/** The worker whose current session is `sessionId`, read through the cache. */
async function session(ctx: Context, nodeId: string, sessionId: string): Promise<Worker> {
  const entry = ctx.deps.quarantined.has(nodeId)
    ? await quarantinedRow(ctx, nodeId, sessionId)
    : (ctx.cache.fresh(nodeId) ?? (await ctx.cache.read(nodeId)));
  if (!entry) throw new GatewayError('token_invalid', 'the worker token is not valid');
  const { row } = entry;
  if (row.quarantined_at) throw quarantinedError(nodeId);
  if (row.session_id !== sessionId) throw new GatewayError('session_replaced', 'this node registered again; use the newer token');
  if (row.session_ended_at) throw new GatewayError('session_ended', 'this session has ended; register again');
  return entry.worker;
}

/** The refusal of a quarantined node's tokens and registrations. */
function quarantinedError(nodeId: string): GatewayError {
  return new GatewayError('node_quarantined', `node '${nodeId}' is quarantined; an admin must release it`);
}

/** `POST /deregister`: ends the session now, frees the node id, requeues what it still held. */
async function deregister(ctx: Context, worker: Worker): Promise<void> {
  const at = ctx.now();
  const [row] = (await ctx.deps.knex.transaction(async (trx) => {
    const rows = (await trx('workers')
      .where({ node_id: worker.nodeId, session_id: worker.sessionId })
      .whereNull('session_ended_at')
      .update({ session_ended_at: at, held_until: at })
      .returning('*')) as Row[];
    if (rows.length > 0) await ctx.deps.announce(trx, `ended:${worker.nodeId}`);
    return rows;
  })) as Row[];
  if (!row) throw new GatewayError('session_replaced', 'this node registered again; use the newer token');
  ctx.cache.store(row);
  const released = await ctx.deps.releaseLeases([worker.nodeId]);
  ctx.log.info({ nodeId: worker.nodeId, released }, 'worker deregistered');
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
      await admit(ctx.deps, report, await pskOf(ctx.deps, worker.nodeId), `node:${worker.nodeId}`, update.tls);
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
    return trx('workers')
      .where({ node_id: worker.nodeId, session_id: worker.sessionId })
      .whereNull('session_ended_at')
      .update(patch)
      .returning('*');
  })) as Row[];
  if (!row) {
    ctx.cache.forget(worker.nodeId);
    throw new GatewayError('session_replaced', 'this node registered again; use the newer token');
  }
  const entry = ctx.cache.store(row);
  if (report) ctx.log.info({ nodeId: worker.nodeId }, 'capability report updated');
  return entry.worker;
}

/** Creates the worker service: registration, authentication, heartbeats and the worker list. */
export function createWorkerService(deps: WorkerServiceDeps): WorkerService {
  // The worker behind each node id, read at most once a second per replica: every Worker API
  // call needs it. A registration or heartbeat here refreshes it at once; one on another
  // replica reaches this one within WORKER_CACHE_MS (a replaced session's token works that
  // much longer here, at most).
  const ctx: Context = {
    deps,
    log: deps.logger.child({ component: 'workers' }),
    now: deps.now ?? (() => new Date()),
    cache: createSessionCache(deps.knex),
    refused: new Map(),
  };
  return {
    register: (req) => register(ctx, req),
    async authenticate(token) {
      const { nodeId, sessionId } = await deps.tokens.verify(token);
      return session(ctx, nodeId, sessionId);
    },
    session: (nodeId, sessionId) => session(ctx, nodeId, sessionId),
    deregister: (worker) => deregister(ctx, worker),
    forget(nodeId) {
      ctx.cache.forget(nodeId);
      ctx.refused.delete(nodeId);
    },
    heartbeat: (worker, update) => heartbeat(ctx, worker, update),
    async list() {
      const rows = (await deps.knex('workers').select('*').orderBy('node_id')) as Row[];
      return rows.map(toWorker);
    },
  };
}

/** The PSK the node registered with: a capability update is held to that key's scope. */
async function pskOf(deps: WorkerServiceDeps, nodeId: string): Promise<PskSubject | null> {
  const row = (await deps.knex('workers').where({ node_id: nodeId }).first('psk_id')) as { psk_id: string } | undefined;
  return row ? deps.psks.subject(row.psk_id) : null;
}
