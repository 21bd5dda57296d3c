import type { DecisionEvent } from '../decisions/log.js';
import type { Decision, PolicyEngine } from '../policy/index.js';

/** A decision's verdict as a replay compares it. */
export interface Verdict {
  allow: boolean;
  reasons: string[];
}

/** One changed decision: what was recorded and what the candidate decides. */
export interface ReplaySample {
  decision_id: string;
  before: Verdict;
  after: Verdict;
}

/** What a replay found on one entrypoint. Every evaluated decision lands in exactly one count. */
export interface EntrypointReport {
  evaluated: number;
  unchanged: number;
  allow_to_deny: number;
  deny_to_allow: number;
  /** Same allow, different reasons (compared as sets). */
  reasons_changed: number;
  /** Recorded with masked fields (`erased`): the stored input is not what was decided on, so it is not compared. */
  masked: number;
  /** The recorded decision was an evaluation error, or the candidate fails on its input. */
  errors: number;
  /** The first changed decisions, at most the sample limit. */
  samples: ReplaySample[];
}

/** How one recorded decision fared under the candidate. */
export type Outcome = 'unchanged' | 'allow_to_deny' | 'deny_to_allow' | 'reasons_changed' | 'masked' | 'errors';

/** An empty report for one entrypoint. */
export function emptyReport(): EntrypointReport {
  return { evaluated: 0, unchanged: 0, allow_to_deny: 0, deny_to_allow: 0, reasons_changed: 0, masked: 0, errors: 0, samples: [] };
}

/**
 * Re-evaluates one recorded decision on the candidate engine, with its input as recorded,
 * and adds it to `report` (a sample when it changed and the report holds fewer than `maxSamples`).
 */
export function replayOne(event: DecisionEvent, engine: PolicyEngine, report: EntrypointReport, maxSamples: number): Outcome {
  report.evaluated += 1;
  const outcome = judge(event, engine);
  report[outcome.kind] += 1;
  if (outcome.after && outcome.kind !== 'unchanged' && report.samples.length < maxSamples) {
    report.samples.push({ decision_id: event.decision_id, before: outcome.before, after: outcome.after });
  }
  return outcome.kind;
}

function judge(event: DecisionEvent, engine: PolicyEngine): { kind: Outcome; before: Verdict; after?: Verdict } {
  const before = verdictOf(event.result);
  if (event.erased.length > 0) return { kind: 'masked', before: before ?? { allow: false, reasons: [] } };
  if (!before) return { kind: 'errors', before: { allow: false, reasons: [] } };
  let after: Verdict;
  try {
    after = verdictOf(engine.evaluate(event.path, event.input).decision)!;
  } catch {
    return { kind: 'errors', before };
  }
  return { kind: classify(before, after), before, after };
}

/** How a verdict changed: a flip of allow first, then a change of the reasons (order ignored). */
export function classify(before: Verdict, after: Verdict): Exclude<Outcome, 'masked' | 'errors'> {
  if (before.allow && !after.allow) return 'allow_to_deny';
  if (!before.allow && after.allow) return 'deny_to_allow';
  const a = [...new Set(before.reasons)].sort();
  const b = [...new Set(after.reasons)].sort();
  return a.length === b.length && a.every((r, i) => r === b[i]) ? 'unchanged' : 'reasons_changed';
}

function verdictOf(result: unknown): Verdict | undefined {
  const d = result as Partial<Decision> | undefined | null;
  if (!d || typeof d.allow !== 'boolean' || !Array.isArray(d.reasons)) return undefined;
  return { allow: d.allow, reasons: d.reasons.filter((r): r is string => typeof r === 'string') };
}
