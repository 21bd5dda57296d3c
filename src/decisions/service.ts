import { randomUUID } from 'node:crypto';
import { isGatewayError } from '../errors/index.js';
import type { Decision, PolicyEngine } from '../policy/index.js';
import type { DecisionMetrics } from './metrics.js';
import type { DecisionLog } from './log.js';
import { storableInput } from './mask.js';

/** A decision as callers see it: the policy's answer plus what identifies it. */
export interface DecisionRecord {
  decision: Decision;
  decisionId: string;
  revision: string;
}

/** Dependencies of the decision service. */
export interface DecisionServiceDeps {
  engine: PolicyEngine;
  log: DecisionLog;
  maskPaths: readonly string[];
  metrics?: DecisionMetrics;
  now?: () => Date;
}

/**
 * The one door to policy decisions: evaluates an entrypoint, records the decision (allowed,
 * denied or failed) in the decision log, and fails closed. Every action in the gateway asks
 * through here so that nothing is decided without a record.
 */
export interface DecisionService {
  decide(entrypoint: string, input: unknown, requestedBy?: string): Promise<DecisionRecord>;
}

export function createDecisionService(deps: DecisionServiceDeps): DecisionService {
  const now = deps.now ?? (() => new Date());
  return {
    async decide(entrypoint, input, requestedBy) {
      const decisionId = randomUUID();
      const active = deps.engine.status().active;
      // Serialised once: the log hashes and stores this text, and the policy reads it when it is the input itself.
      const stored = storableInput(input, deps.maskPaths);
      const started = process.hrtime.bigint();
      let outcome: { decision: Decision; revision: string } | undefined;
      let failure: unknown;
      try {
        outcome = deps.engine.evaluate(entrypoint, input, stored.exact ? stored.json : undefined);
      } catch (err) {
        failure = err;
      }
      const evalNs = Number(process.hrtime.bigint() - started);
      if (deps.metrics) {
        const result = outcome ? (outcome.decision.allow ? 'allow' : 'deny') : 'error';
        deps.metrics.decisions.inc({ entrypoint, result });
        deps.metrics.evalSeconds.observe({ entrypoint }, evalNs / 1e9);
      }
      await deps.log.record({
        decision_id: decisionId,
        path: entrypoint,
        input: stored.input,
        inputJson: stored.json,
        ...(outcome && { result: outcome.decision }),
        ...(failure !== undefined && { error: describeFailure(failure) }),
        erased: stored.erased,
        revision: outcome?.revision ?? active?.revision ?? null,
        bundle_digest: active?.digest ?? null,
        requested_by: requestedBy ?? null,
        timestamp: now(),
        eval_ns: evalNs,
      });
      if (!outcome) throw failure;
      return { decision: outcome.decision, decisionId, revision: outcome.revision };
    },
  };
}

function describeFailure(err: unknown): { code: string; message: string } {
  return isGatewayError(err) ? { code: err.code, message: err.message } : { code: 'internal', message: 'evaluation failed' };
}
