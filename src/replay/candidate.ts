import type { Config } from '../config/index.js';
import type { Logger } from '../logging/index.js';
import { type ActiveBundle, createBundleChecks, createPolicyEngine, type PolicyEngine, REQUIRED_ENTRYPOINTS } from '../policy/index.js';

/** A candidate bundle loaded for replay: its own engine, never the one deciding for the gateway. */
export interface Candidate {
  engine: PolicyEngine;
  info: ActiveBundle;
}

/**
 * Loads a candidate bundle into a fresh engine with the same checks the gateway runs on every
 * bundle (signature rules, host builtins, required entrypoints, default deny), so a candidate
 * is judged exactly as it would be on activation. A refused candidate throws its BundleError.
 * The engine carries no runtime data (settings such as the kill switch are at their defaults):
 * a replay shows what the policy change alone would decide differently.
 */
export async function loadCandidate(archive: Buffer, policy: Config['policy'], logger: Logger): Promise<Candidate> {
  const engine = createPolicyEngine({ logger, required: REQUIRED_ENTRYPOINTS, ...createBundleChecks(policy) });
  const info = await engine.activate('candidate', () => Promise.resolve(archive));
  return { engine, info };
}
