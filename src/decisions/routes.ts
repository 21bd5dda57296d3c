import type Router from '@koa/router';
import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import type { PolicyEngine } from '../policy/index.js';
import { readJson } from '../server/json-body.js';
import type { DecisionLog } from './log.js';
import type { DecisionService } from './service.js';

/** Dependencies of the decision routes. */
export interface DecisionRouteDeps {
  decisions: DecisionService;
  log: DecisionLog;
  engine: PolicyEngine;
  maxBodyBytes: number;
}

/**
 * OPA-compatible `POST /v1/data/{path}` for the active bundle's entrypoints (`{input}` →
 * `{result, decision_id}`) and `GET /v1/decisions/{id}` in OPA's decision-log shape. Paths
 * that are not entrypoints are refused: the gateway answers only what it can compile.
 */
export function decisionRoutes(router: Router, deps: DecisionRouteDeps): void {
  router.post(/^\/v1\/data\/(.+)$/, async (ctx) => {
    const path = ctx.path.slice('/v1/data/'.length).replace(/\/+$/, '');
    const active = deps.engine.status().active;
    if (active && !active.entrypoints.includes(path)) {
      throw new GatewayError('entrypoint_unknown', `'${path}' is not an entrypoint of bundle ${active.revision}`);
    }
    const body = await readJson(ctx, deps.maxBodyBytes);
    if (body === null || typeof body !== 'object' || Array.isArray(body) || !('input' in body)) {
      throw new GatewayError('bad_request', 'send {"input": ...}');
    }
    const principal = ctx.state.principal as Principal;
    const record = await deps.decisions.decide(path, (body as { input: unknown }).input, principal.id);
    ctx.body = { result: record.decision, decision_id: record.decisionId };
  });

  router.get('/v1/decisions/:id', async (ctx) => {
    const id = ctx.params.id!;
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
      throw new GatewayError('not_found', 'no such decision');
    }
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
  });
}
