import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import { isTaskId } from '../lib/ids.js';
import { queryLimit, queryText } from '../server/query-params.js';

/** Which logged decisions to list (every field optional but `limit`). */
export interface DecisionFilter {
  entrypoint?: string;
  allow?: boolean;
  reason?: string;
  /** The subject's id or node id. */
  subject?: string;
  /** A task id anywhere in the input (a job's, an api.call's, a tool call's). */
  task?: string;
  since?: Date;
  until?: Date;
  /** Decisions before this sequence number (the next page). */
  before?: number;
  limit: number;
}

/** One decision in a list: enough to find it; `GET /v1/decisions/{id}` has the rest. */
export interface DecisionSummary {
  seq: number;
  decision_id: string;
  path: string;
  allow: boolean | null;
  reasons: unknown[];
  subject: string | null;
  task_id: string | null;
  revision: string | null;
  masked: boolean;
  error: string | null;
  timestamp: string;
  eval_ns: number;
}

/** Allowed and denied decisions per minute since a time. */
export interface DecisionStats {
  since: string;
  total: { allow: number; deny: number; error: number };
  minutes: { minute: string; allow: number; deny: number; error: number }[];
}

/** The audit rows a decision led to (api.call audit, tool audit, job leases and dispatch answers). */
export interface DecisionTrail {
  api_audit: Record<string, unknown>[];
  tool_audit: Record<string, unknown>[];
  job_attempts: Record<string, unknown>[];
  job_decisions: Record<string, unknown>[];
}

/** Read-only queries over the decision log for the console and the API. */
export interface DecisionQueries {
  list(filter: DecisionFilter): Promise<DecisionSummary[]>;
  stats(since: Date): Promise<DecisionStats>;
  trail(decisionId: string): Promise<DecisionTrail>;
}

const TASK_PATH = '$.** ? (@.task_id == $t)';

/** Creates the queries over `decision_log` (and, for trails, the audit tables that name a decision). */
export function createDecisionQueries(knex: Knex): DecisionQueries {
  return {
    async list(f) {
      const q = knex('decision_log').orderBy('seq', 'desc').limit(f.limit);
      if (f.entrypoint !== undefined) q.where('path', f.entrypoint);
      if (f.allow !== undefined) q.whereRaw("(result->>'allow')::boolean = ?", [f.allow]);
      if (f.reason !== undefined) q.whereRaw("result->'reasons' @> jsonb_build_array(?::text)", [f.reason]);
      if (f.subject !== undefined) q.whereRaw("(input->'subject'->>'id' = ? OR input->'subject'->>'node_id' = ?)", [f.subject, f.subject]);
      if (f.task !== undefined) q.whereRaw("jsonb_path_exists(input, ?::jsonpath, jsonb_build_object('t', ?::text))", [TASK_PATH, f.task]);
      if (f.since !== undefined) q.where('timestamp', '>=', f.since);
      if (f.until !== undefined) q.where('timestamp', '<', f.until);
      if (f.before !== undefined) q.where('seq', '<', f.before);
      const rows = (await q.select(
        'seq',
        'decision_id',
        'path',
        'result',
        'error',
        'erased',
        'revision',
        'timestamp',
        'eval_ns',
        knex.raw("coalesce(input->'subject'->>'id', input->'subject'->>'node_id') as subject"),
        knex.raw(`jsonb_path_query_first(input, '$.**.task_id') #>> '{}' as task_id`),
      )) as Row[];
      return rows.map(summary);
    },
    async stats(since) {
      const rows = (await knex('decision_log')
        .where('timestamp', '>=', since)
        .groupByRaw('1')
        .orderByRaw('1')
        .select(
          knex.raw("date_trunc('minute', timestamp) as minute"),
          knex.raw("count(*) filter (where (result->>'allow')::boolean) as allow"),
          knex.raw("count(*) filter (where not (result->>'allow')::boolean) as deny"),
          knex.raw("count(*) filter (where result->'allow' is null) as error"),
        )) as { minute: Date; allow: string; deny: string; error: string }[];
      const minutes = rows.map((r) => ({ minute: new Date(r.minute).toISOString(), allow: +r.allow, deny: +r.deny, error: +r.error }));
      const sum = (k: 'allow' | 'deny' | 'error') => minutes.reduce((n, m) => n + m[k], 0);
      return { since: since.toISOString(), total: { allow: sum('allow'), deny: sum('deny'), error: sum('error') }, minutes };
    },
    async trail(decisionId) {
      const [api, tool, attempts, dispatch] = await Promise.all([
        knex('api_audit').where({ decision_id: decisionId }).orderBy('seq').limit(100).select('*'),
        knex('tool_audit').where({ decision_id: decisionId }).orderBy('seq').limit(100).select('*'),
        knex('job_attempts')
          .where({ decision_id: decisionId })
          .limit(100)
          .select('lease_id', 'job_id', 'attempt', 'node_id', 'leased_at', 'outcome'),
        knex('job_decisions').where({ decision_id: decisionId }).limit(100).select('job_id', 'node_id', 'allow', 'reasons', 'decided_at'),
      ]);
      const strip = (rows: Record<string, unknown>[]) => rows.map(({ prev_hash: _p, hash: _h, ...rest }) => rest);
      return { api_audit: strip(api), tool_audit: strip(tool), job_attempts: attempts, job_decisions: dispatch };
    },
  };
}

interface Row {
  seq: string | number;
  decision_id: string;
  path: string;
  result: { allow?: unknown; reasons?: unknown } | null;
  error: { code: string } | null;
  erased: string[];
  revision: string | null;
  timestamp: Date;
  eval_ns: string | number;
  subject: string | null;
  task_id: string | null;
}

function summary(r: Row): DecisionSummary {
  return {
    seq: Number(r.seq),
    decision_id: r.decision_id,
    path: r.path,
    allow: typeof r.result?.allow === 'boolean' ? r.result.allow : null,
    reasons: Array.isArray(r.result?.reasons) ? r.result.reasons : [],
    subject: r.subject,
    task_id: r.task_id,
    revision: r.revision,
    masked: r.erased.length > 0,
    error: r.error?.code ?? null,
    timestamp: new Date(r.timestamp).toISOString(),
    eval_ns: Number(r.eval_ns),
  };
}

/** Reads `GET /v1/decisions` query parameters into a filter, refusing malformed ones with `bad_request`. */
export function parseDecisionFilter(query: Record<string, unknown>): DecisionFilter {
  const one = (name: string) => queryText(query, name);
  const time = (name: string) => {
    const v = one(name);
    if (v === undefined) return undefined;
    const d = parseTime(v);
    if (!d) throw new GatewayError('bad_request', `${name} must be an ISO 8601 time or a duration like 1h`);
    return d;
  };
  const allow = one('allow');
  if (allow !== undefined && allow !== 'true' && allow !== 'false') throw new GatewayError('bad_request', 'allow must be true or false');
  const limit = queryLimit(query);
  const before = one('before');
  if (before !== undefined && !/^\d{1,18}$/.test(before)) throw new GatewayError('bad_request', 'before must be a sequence number');
  const task = one('task');
  if (task !== undefined && !isTaskId(task)) throw new GatewayError('bad_request', 'task must be a task id');
  const text = (name: string) => {
    const v = one(name);
    if (v !== undefined && v.length > 256) throw new GatewayError('bad_request', `${name} is longer than 256 characters`);
    return v;
  };
  return {
    ...defined('entrypoint', text('entrypoint')),
    ...(allow !== undefined && { allow: allow === 'true' }),
    ...defined('reason', text('reason')),
    ...defined('subject', text('subject')),
    ...defined('task', task),
    ...defined('since', time('since')),
    ...defined('until', time('until')),
    ...(before !== undefined && { before: Number(before) }),
    limit,
  };
}

/** An ISO 8601 time, or a duration back from now (`90s`, `15m`, `24h`, `7d`). */
export function parseTime(text: string, now = Date.now()): Date | undefined {
  const duration = /^(\d{1,9})([smhd])$/.exec(text);
  if (duration) return new Date(now - Number(duration[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[duration[2] as 's' | 'm' | 'h' | 'd']);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined;
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

function defined<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
