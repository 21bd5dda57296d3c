import type { DecisionEvent } from '../decisions/index.js';
import { BUNDLE_NAME } from '../policy/index.js';

/** What identifies this gateway process in every event and status report (OPA's `labels`). */
export interface Labels {
  /** A fresh id per process, as OPA's own instance id. */
  id: string;
  /** The gateway's version. */
  version: string;
  /** The host the replica runs on. */
  replica: string;
  [label: string]: string;
}

/** One decision as OPA's decision-log plugin sends it to a Decision Log Service. */
export interface OpaDecisionEvent {
  labels: Labels;
  decision_id: string;
  bundles?: Record<string, { revision: string }>;
  path: string;
  input: unknown;
  result?: unknown;
  error?: { code: string; message: string };
  /** Input paths whose values were replaced before the decision left the gateway (OPA's mask `upsert`). */
  masked?: string[];
  requested_by?: string;
  timestamp: string;
  metrics: { timer_rego_query_eval_ns: number };
}

/**
 * The OPA wire form of a recorded decision. The input is already masked; OPA names the masked
 * paths from the event's root, so `/subject/psk` in the input is `/input/subject/psk` here.
 * Empty optional fields are left out, as OPA's encoder omits them.
 */
export function toOpaEvent(event: DecisionEvent, labels: Labels): OpaDecisionEvent {
  return {
    labels,
    decision_id: event.decision_id,
    ...(event.revision !== null && { bundles: { [BUNDLE_NAME]: { revision: event.revision } } }),
    path: event.path,
    input: event.input,
    ...(event.result !== undefined && { result: event.result }),
    ...(event.error && { error: event.error }),
    ...(event.erased.length > 0 && { masked: event.erased.map((pointer) => `/input${pointer}`) }),
    ...(event.requested_by !== null && { requested_by: event.requested_by }),
    timestamp: event.timestamp.toISOString(),
    metrics: { timer_rego_query_eval_ns: event.eval_ns },
  };
}
