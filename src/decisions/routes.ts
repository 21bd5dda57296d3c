import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { isUuid } from '../lib/ids.js';
import type { PolicyEngine } from '../policy/index.js';
import { defineRoutes } from '../server/route.js';
import type { DecisionLog } from './log.js';
import type { DecisionService } from './service.js';

/** Dependencies of the decision routes. */
export interface DecisionRouteDeps {
  decisions: DecisionService;
  log: DecisionLog;
  engine: PolicyEngine;
}

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
      if (!event && deps.log.pending() > 0) {
        await deps.log.flush(); // a decision made a moment ago may still be buffered
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
