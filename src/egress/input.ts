import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { createBatcher } from '../lib/batcher.js';
import { isTaskId, isUuid } from '../lib/ids.js';
import type { PreferencesService } from '../preferences/index.js';
import { type Budget, budgetFromRow, type BudgetRow, BUDGETS_NOW, type BudgetScope } from './budgets.js';
import type { Ledger } from './ledger.js';
import type { PreparedRequest } from './providers/types.js';
import type { ApiCaller, ApiCallInput } from './types.js';

/** A checked `api.call` request: what the caller may say, and nothing else. */
export interface ParsedCall {
  provider: string;
  operation: string;
  params: unknown;
  task_id: string;
  job_id: string | null;
}

const FIELDS = new Set(['provider', 'operation', 'params', 'task_id', 'job_id']);
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Checks the request body of `POST /v1/api/call`. */
export function parseApiCall(raw: unknown): ParsedCall {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new GatewayError('bad_request', 'send a JSON object');
  const r = raw as Record<string, unknown>;
  const extra = Object.keys(r).find((k) => !FIELDS.has(k));
  if (extra)
    throw new GatewayError(
      'bad_request',
      `'${extra.slice(0, 64)}' is not an api.call field (task, user, budget and region come from the gateway)`,
    );
  if (typeof r.provider !== 'string' || !NAME.test(r.provider)) throw new GatewayError('bad_request', 'provider must be a provider name');
  if (typeof r.operation !== 'string' || !NAME.test(r.operation))
    throw new GatewayError('bad_request', 'operation must be an operation name');
  if (!isTaskId(r.task_id)) throw new GatewayError('bad_request', 'task_id must be 1-256 letters, digits or _.:@/-');
  if (r.job_id !== undefined && r.job_id !== null && !isUuid(r.job_id)) throw new GatewayError('bad_request', 'job_id must be a job id');
  if (r.params === undefined) throw new GatewayError('bad_request', 'params is required');
  return {
    provider: r.provider,
    operation: r.operation,
    params: r.params,
    task_id: r.task_id,
    job_id: (r.job_id as string | undefined) ?? null,
  };
}

/** The policy's subject: the worker as its stored capability report describes it, or the orchestrator. */
export function subjectOf(caller: ApiCaller): ApiCallInput['subject'] {
  if (caller.kind === 'orchestrator') return { kind: 'orchestrator', id: caller.id, labels: [] };
  const c = caller.worker.capabilities;
  return {
    kind: 'worker',
    id: c.node_id,
    node_id: c.node_id,
    labels: c.labels,
    ...(c.region !== undefined && { region: c.region }),
    inference_mode: c.inference_mode,
    supported_providers: c.supported_providers,
    supported_models: c.supported_models ?? [],
    ...(c.rate_limits !== undefined && { rate_limits: c.rate_limits }),
  };
}

/** The job a call is made for, as the context query reads it. */
export interface JobContext {
  task_id: string;
  user_id: string;
  project_id: string | null;
  group_id: string | null;
  preferences: Record<string, unknown>;
  requirements: Record<string, unknown>;
  budget_usd: string | null;
  state: string;
  leased_by: string | null;
  lease_expires_at: Date | null;
}

/** One budget per scope (null where none is set). */
export type ScopeBudgets = Record<BudgetScope, Budget | null>;

/** The budgets a call would be held against: each scope's budget for every model, and `model`, each scope's for the call's model. */
export interface CallBudgets extends ScopeBudgets {
  model: ScopeBudgets;
}

/** The server state a call is decided on. */
export interface CallContext {
  job: JobContext | undefined;
  budget: CallBudgets;
}

/** What one call's context is read by: its job (by id, or the task's latest for direct routing), model and subject. */
interface ContextKey {
  job_id: string | null;
  task_id: string;
  model: string;
  subject_id: string;
}

/** One call's context as the database answers it. */
interface ContextRow {
  job: JobContext | null;
  budgets: BudgetRow[];
}

// One round trip for a batch of calls: each call's job (by id, or the task's latest for direct
// routing) and the budgets the call would be held against, in their current period.
const CONTEXT_BATCH = `
    SELECT c.job, c.budgets
    FROM ROWS FROM (jsonb_to_recordset(?::jsonb) AS (job_id uuid, task_id text, model text, subject_id text))
      WITH ORDINALITY AS k(job_id, task_id, model, subject_id, i)
    CROSS JOIN LATERAL (
      WITH j AS (
        (SELECT task_id, user_id, project_id, group_id, preferences, requirements, budget_usd, state, leased_by, lease_expires_at
          FROM jobs WHERE id = k.job_id)
        UNION ALL
        (SELECT task_id, user_id, project_id, group_id, preferences, requirements, budget_usd, state, leased_by, lease_expires_at
          FROM jobs WHERE k.job_id IS NULL AND task_id = k.task_id ORDER BY created_at DESC LIMIT 1))
      SELECT (SELECT row_to_json(j) FROM j LIMIT 1) AS job,
        (SELECT coalesce(json_agg(b), '[]'::json) FROM (${BUDGETS_NOW}) b
          WHERE b.model IN ('', k.model) AND ((b.scope = 'task' AND b.subject_id = k.task_id) OR (b.scope = 'subject' AND b.subject_id = k.subject_id)
             OR (b.scope = 'user' AND b.subject_id = (SELECT user_id FROM j LIMIT 1))
             OR (b.scope = 'group' AND b.subject_id = (SELECT group_id FROM j LIMIT 1))
             OR (b.scope = 'project' AND b.subject_id = (SELECT project_id FROM j LIMIT 1)))) AS budgets) c
    ORDER BY k.i`;

/** The most calls one context query reads. */
const MAX_CONTEXT_BATCH = 64;
/** The most contexts remembered; past this, the oldest go first. */
const MAX_REMEMBERED = 10_000;

/** Reads call contexts, group-committed: the calls that arrive while one query is in flight share the next. */
export interface ContextReader {
  read(key: ContextKey): Promise<ContextRow>;
  /** Forgets the context read for `key` (its task's budget was just created). */
  forget(key: ContextKey): void;
  /** A lease ended (of `nodeId`, or any with none: the listener reconnected): forgets every context read before. */
  leaseEnded(nodeId?: string): void;
}

/** When a context read may answer the calls after it. */
export interface ContextReuse {
  /** How long a context read answers again; 0: every call reads. */
  reuseMs: number;
  /** True while this replica hears every end of a lease; false: nothing is remembered. */
  listening: () => boolean;
}

const keyOf = (k: ContextKey) => `${k.job_id ?? ''}\u0000${k.task_id}\u0000${k.model}\u0000${k.subject_id}`;

/**
 * The context reader over `knex`, reckoning budget periods at `now()` when each batch is read.
 * With `reuse`, a context read answers the same call again for `reuseMs` (read again in the
 * background once half of that has passed), while this replica
 * hears lease ends: any end forgets everything remembered, a read that overlapped an end is
 * not remembered, nor is a named job that is not leased (the start of a lease is not
 * announced), and a job whose lease expiry (as read) has passed is read again. Budgets a
 * remembered context shows are as old as the read; the ledger decides what is admitted.
 */
export function createContextReader(knex: Knex, now: () => number, reuse?: ContextReuse): ContextReader {
  const batcher = createBatcher(async (keys: ContextKey[]) => {
    const { rows } = (await knex.raw(CONTEXT_BATCH, [JSON.stringify(keys), new Date(now())])) as { rows: ContextRow[] };
    return rows;
  }, MAX_CONTEXT_BATCH);
  if (!reuse || reuse.reuseMs <= 0) return { read: (key) => batcher.submit(key), forget: () => {}, leaseEnded: () => {} };
  const remembered = new Map<string, { row: ContextRow; readAt: number; refreshing?: boolean }>();
  // Bumped by every lease end, so a read that began before one is not remembered.
  let epoch = 0;
  // Reads `key` (the read beginning at `t`) and remembers it if nothing may have changed it meanwhile.
  const readAndKeep = async (key: ContextKey, name: string, t: number): Promise<ContextRow> => {
    const began = epoch;
    const row = await batcher.submit(key);
    // A job named but not leased is read again each time: a lease it gets is announced to nobody.
    const settled = key.job_id === null || row.job?.state === 'leased';
    if (epoch === began && settled && reuse.listening()) {
      remembered.delete(name);
      if (remembered.size >= MAX_REMEMBERED) remembered.delete(remembered.keys().next().value!);
      remembered.set(name, { row, readAt: t });
    }
    return row;
  };
  return {
    async read(key) {
      const t = now();
      if (!reuse.listening()) return batcher.submit(key);
      const name = keyOf(key);
      const hit = remembered.get(name);
      const leaseLeft = (row: ContextRow) => !row.job?.lease_expires_at || new Date(row.job.lease_expires_at).getTime() > t;
      if (hit && t - hit.readAt < reuse.reuseMs && leaseLeft(hit.row)) {
        // Past half its reuse time, the next read starts now, so a steady caller never waits for one.
        if (!hit.refreshing && t - hit.readAt >= reuse.reuseMs / 2) {
          hit.refreshing = true;
          readAndKeep(key, name, t).catch(() => (hit.refreshing = false));
        }
        return hit.row;
      }
      if (hit) remembered.delete(name);
      return readAndKeep(key, name, t);
    },
    forget: (key) => remembered.delete(keyOf(key)),
    leaseEnded() {
      epoch++;
      remembered.clear();
    },
  };
}

const noBudgets = (): ScopeBudgets => ({ task: null, user: null, group: null, project: null, subject: null });

/**
 * Loads the job and budgets of a call. A worker calls only for a job it leases, of the task it
 * names; the orchestrator may name a job or let the task's latest stand. A job's budget
 * becomes its task's when the task has none yet.
 */
export async function loadCallContext(
  deps: { contexts: ContextReader; ledger: Ledger },
  caller: ApiCaller,
  req: ParsedCall,
  subjectId: string,
  model = '',
): Promise<CallContext> {
  if (caller.kind === 'worker' && !req.job_id) {
    throw new GatewayError('job_not_leased', 'a worker calls for a job it leases: job_id is required', { reasons: ['job_not_leased'] });
  }
  const key = { job_id: req.job_id, task_id: req.task_id, model, subject_id: subjectId };
  const row = await deps.contexts.read(key);
  const job = row.job ?? undefined;
  checkJob(caller, req, job);
  const budget: CallBudgets = { ...noBudgets(), model: noBudgets() };
  for (const b of row.budgets) (b.model === '' ? budget : budget.model)[b.scope] = budgetFromRow(b);
  if (!budget.task && job?.budget_usd !== null && job?.budget_usd !== undefined) {
    deps.contexts.forget(key);
    await deps.ledger.ensureBudget('task', req.task_id, Number(job.budget_usd), 'job');
    budget.task = (await deps.ledger.getBudget('task', req.task_id)) ?? null;
  }
  return { job, budget };
}

/** Refuses a call for a job the caller may not call for. */
function checkJob(caller: ApiCaller, req: ParsedCall, job: JobContext | undefined): void {
  if (caller.kind === 'worker') {
    const refuse = (why: string) => new GatewayError('job_not_leased', why, { reasons: ['job_not_leased'] });
    if (
      !job ||
      job.state !== 'leased' ||
      job.leased_by !== caller.worker.nodeId ||
      !job.lease_expires_at ||
      new Date(job.lease_expires_at) <= new Date()
    ) {
      throw refuse(`job ${req.job_id} is not leased by ${caller.worker.nodeId}`);
    }
    if (job.task_id !== req.task_id) throw refuse(`job ${req.job_id} belongs to another task`);
  } else if (req.job_id) {
    if (!job) throw new GatewayError('job_not_found', `no job ${req.job_id}`);
    if (job.task_id !== req.task_id) throw new GatewayError('bad_request', `job ${req.job_id} belongs to another task`);
  }
}

const budgetView = (b: Budget | null) =>
  b && {
    limit_usd: b.limit_usd,
    spent_usd: b.spent_usd,
    reserved_usd: b.reserved_usd,
    remaining_usd: b.remaining_usd,
    soft_limit_usd: b.soft_limit_usd,
    period: b.period,
    reset: b.reset,
    resets_at: b.resets_at,
  };

const scopeViews = (b: ScopeBudgets) => ({
  task: budgetView(b.task),
  user: budgetView(b.user),
  group: budgetView(b.group),
  project: budgetView(b.project),
  subject: budgetView(b.subject),
});

/**
 * The `api.call` policy input, from server state only: the region is the worker's reported
 * one (or this gateway's for the orchestrator), the preferences the user's effective ones.
 */
export function policyInput(
  deps: { preferences: PreferencesService; region: string },
  call: {
    caller: ApiCaller;
    subject: ApiCallInput['subject'];
    req: ParsedCall;
    prepared: PreparedRequest;
    estimatedCostUsd: number;
    context: CallContext;
  },
): ApiCallInput {
  const { caller, req, prepared } = call;
  const { job, budget } = call.context;
  return {
    action: 'api.call',
    subject: call.subject,
    resource: {
      provider: req.provider,
      operation: req.operation,
      model: prepared.model,
      stream: prepared.stream,
      estimated_cost_usd: call.estimatedCostUsd,
    },
    context: {
      task_id: req.task_id,
      job_id: req.job_id,
      user_id: job?.user_id ?? null,
      project_id: job?.project_id ?? null,
      group_id: job?.group_id ?? null,
      region: caller.kind === 'worker' ? (caller.worker.capabilities.region ?? null) : deps.region,
      preferences: deps.preferences.resolve({
        groupId: job?.group_id ?? null,
        userId: job?.user_id ?? '',
        projectId: job?.project_id ?? null,
        task: job?.preferences ?? {},
      }),
      requirements: job?.requirements ?? {},
      budget: { ...scopeViews(budget), model: scopeViews(budget.model) },
    },
  };
}
