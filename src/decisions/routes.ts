import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { isUuid } from '../lib/ids.js';
import type { PolicyEngine } from '../policy/index.js';
import { LIMIT_PARAM } from '../server/query-params.js';
import { defineRoutes, type Param } from '../server/route.js';
import type { DecisionLog } from './log.js';
import { type DecisionQueries, parseDecisionFilter, parseTime } from './query.js';
import type { DecisionService } from './service.js';

/** Dependencies of the decision routes. */
export interface DecisionRouteDeps {
  decisions: DecisionService;
  log: DecisionLog;
  engine: PolicyEngine;
  queries: DecisionQueries;
}

const FILTERS: Param[] = [
  { in: 'query', name: 'entrypoint', schema: { type: 'string' }, description: 'Only this entrypoint (e.g. cynode/dispatch/decision).' },
  {
    in: 'query',
    name: 'allow',
    schema: { type: 'string', enum: ['true', 'false'] },
    description: 'Only allowed or only denied decisions.',
  },
  { in: 'query', name: 'reason', schema: { type: 'string' }, description: 'Only decisions giving this reason.' },
  { in: 'query', name: 'subject', schema: { type: 'string' }, description: 'Only this subject (its id or node id).' },
  { in: 'query', name: 'task', schema: { type: 'string' }, description: 'Only decisions whose input names this task id.' },
  { in: 'query', name: 'since', schema: { type: 'string' }, description: 'From this time (ISO 8601, or a duration back such as 1h).' },
  { in: 'query', name: 'until', schema: { type: 'string' }, description: 'Before this time (ISO 8601, or a duration back).' },
  {
    in: 'query',
    name: 'before',
    schema: { type: 'string', pattern: '^\\d{1,18}$' },
    description: 'Decisions before this sequence number.',
  },
  LIMIT_PARAM,
];

/**
 * OPA-compatible `POST /v1/data/{path}` for the active bundle's entrypoints (`{input}` →
 * `{result, decision_id}`) and `GET /v1/decisions/{id}` in OPA's decision-log shape. Paths
 * that are not entrypoints are refused: the gateway answers only what it can compile.
 */
export const DECISION_ROUTES = defineRoutes<DecisionRouteDeps>([
  {
    method: 'post',
    path: '/v1/data/{path}',
    roles: ['control'],
    access: 'admin',
    summary: 'OPA-compatible decision on a bundle entrypoint (path spans slashes, e.g. cynode/register/decision).',
    body: { schema: 'DataRequest' },
    ok: { 200: { description: 'The decision', schema: 'DataAnswer' } },
    errors: ['entrypoint_unknown'],
    db: true,
    decides: true,
    async handler(ctx, deps) {
      const path = ctx.path.slice('/v1/data/'.length).replace(/\/+$/, '');
      const active = deps.engine.status().active;
      if (active && !active.entrypoints.includes(path)) {
        throw new GatewayError('entrypoint_unknown', `'${path}' is not an entrypoint of bundle ${active.revision}`);
      }
      const body = ctx.state.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body) || !('input' in body)) {
        throw new GatewayError('bad_request', 'send {"input": ...}');
      }
      const principal = ctx.state.principal as Principal;
      const record = await deps.decisions.decide(path, (body as { input: unknown }).input, principal.id);
      ctx.body = { result: record.decision, decision_id: record.decisionId };
    },
  },
  {
    method: 'get',
    path: '/v1/decisions',
    roles: ['control'],
    access: 'reader',
    summary: 'Logged decisions, newest first, filtered by entrypoint, outcome, reason, subject, task and time.',
    params: FILTERS,
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, deps) {
      const filter = parseDecisionFilter(ctx.query);
      if (deps.log.pending() > 0) await deps.log.flush(); // list what was decided, not what was written
      ctx.body = { decisions: await deps.queries.list(filter) };
    },
  },
  {
    method: 'get',
    path: '/v1/decisions/stats',
    roles: ['control'],
    access: 'reader',
    summary: 'Allowed, denied and failed decisions per minute since a time (default the last hour).',
    params: [{ in: 'query', name: 'since', schema: { type: 'string' }, description: 'ISO 8601, or a duration back (at most 7d).' }],
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, deps) {
      const raw = typeof ctx.query.since === 'string' ? ctx.query.since : '1h';
      const since = parseTime(raw);
      if (!since || Date.now() - since.getTime() > 7 * 864e5) {
        throw new GatewayError('bad_request', 'since must be a time or duration within the last 7 days');
      }
      if (deps.log.pending() > 0) await deps.log.flush();
      ctx.body = await deps.queries.stats(since);
    },
  },
  {
    method: 'get',
    path: '/v1/decisions/{id}/audit',
    roles: ['control'],
    access: 'reader',
    summary: 'The audit rows a decision led to: api.call and tool audits, job leases and dispatch answers.',
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: ['not_found'],
    db: true,
    async handler(ctx, deps) {
      const id = ctx.params.id!;
      if (!isUuid(id)) throw new GatewayError('not_found', 'no such decision');
      ctx.body = await deps.queries.trail(id);
    },
  },
  {
    method: 'get',
    path: '/v1/decisions/{id}',
    roles: ['control'],
    access: 'reader',
    summary: "One logged decision in OPA's decision-log shape.",
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: ['not_found'],
    db: true,
    async handler(ctx, deps) {
      const id = ctx.params.id!;
      if (!isUuid(id)) throw new GatewayError('not_found', 'no such decision');
      let event = await deps.log.get(id);
      if (!event) {
        // A decision made a moment ago may still be buffered, or in a batch being written while
        // the read ran (then nothing is pending any more, yet the read missed it): flush waits for both.
        await deps.log.flush();
        event = await deps.log.get(id);
      }
      if (!event) throw new GatewayError('not_found', 'no such decision');
      ctx.body = {
        decision_id: event.decision_id,
        path: event.path,
        input: event.input,
        ...(event.result !== undefined && { result: event.result }),
        ...(event.error && { error: event.error }),
        erased: event.erased,
        bundles: { cynode: { revision: event.revision } },
        bundle_digest: event.bundle_digest,
        requested_by: event.requested_by,
        timestamp: event.timestamp.toISOString(),
        metrics: { timer_rego_query_eval_ns: event.eval_ns },
      };
    },
  },
]);
