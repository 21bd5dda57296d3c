/**
 * How far ahead of this clock a token's `iat` may be: replicas and target services run on
 * hosts whose clocks differ a little, and a refusal there would be an outage, not a defence.
 */
export const MAX_CLOCK_SKEW_S = 30;

/**
 * True when a token claims to be issued later than now (beyond clock skew). jose checks `iat`
 * only against a maximum age; no gateway issues such a token, so every verifier refuses it.
 */
export function issuedInFuture(iat: unknown, nowMs: number = Date.now()): boolean {
  return typeof iat === 'number' && iat > nowMs / 1000 + MAX_CLOCK_SKEW_S;
}
