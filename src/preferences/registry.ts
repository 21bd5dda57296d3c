/**
 * The user preferences the dispatch policy reads, with the type and default of each. Names
 * are the policy's own (`input.context.preferences.<key>`), so nothing is renamed between
 * the API, the database and Rego.
 */
export const PREFERENCES = {
  /** Cloud workers may run this user's jobs (cloud selection needs policy AND preferences). */
  cloud_allowed: { type: 'boolean', default: false },
  /** The user's override of the external provider (`openai`, `anthropic`), or null. */
  provider: { type: 'string_or_null', default: null },
  /** Regions the work may run in; empty means any. */
  regions: { type: 'string_list', default: [] },
  /** Most a single job may be estimated to cost, or null for no user limit. */
  max_cost_usd: { type: 'number_or_null', default: null },
  /** How long a job with a preferred node waits for it before other nodes may take it. */
  locality_max_wait_ms: { type: 'wait_ms', default: 30_000 },
} as const;

export type PreferenceKey = keyof typeof PREFERENCES;

/** The scopes preferences are set at, weakest first; the job's own (task) level comes last. */
export const SCOPES = ['system', 'group', 'user', 'project'] as const;
export type Scope = (typeof SCOPES)[number];

/** True when `key` names a preference. */
export function isPreferenceKey(key: string): key is PreferenceKey {
  return Object.prototype.hasOwnProperty.call(PREFERENCES, key);
}

/** Why `value` is not valid for the preference `key`, or null when it is. */
export function preferenceProblem(key: PreferenceKey, value: unknown): string | null {
  switch (PREFERENCES[key].type) {
    case 'boolean':
      return typeof value === 'boolean' ? null : 'must be true or false';
    case 'string_or_null':
      return value === null || (typeof value === 'string' && /^[a-z0-9_.-]{1,64}$/.test(value)) ? null : 'must be null or a provider name';
    case 'string_list':
      return Array.isArray(value) && value.length <= 64 && value.every((v) => typeof v === 'string' && /^[a-z0-9_.-]{1,64}$/.test(v))
        ? null
        : 'must be a list of up to 64 region names';
    case 'number_or_null':
      return value === null || (typeof value === 'number' && Number.isFinite(value) && value >= 0) ? null : 'must be null or a number ≥ 0';
    case 'wait_ms':
      return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 3_600_000
        ? null
        : 'must be an integer from 0 to 3600000';
  }
}

/** The defaults, as one object (the system level before anything is set). */
export function defaultPreferences(): Record<PreferenceKey, unknown> {
  return Object.fromEntries(Object.entries(PREFERENCES).map(([k, v]) => [k, v.default])) as Record<PreferenceKey, unknown>;
}
