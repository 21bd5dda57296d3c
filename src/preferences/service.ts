import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import { defaultPreferences, isPreferenceKey, type PreferenceKey, preferenceProblem, SCOPES, type Scope } from './registry.js';

/** One stored preference. */
export interface Preference {
  scope: Scope;
  scopeId: string;
  key: PreferenceKey;
  value: unknown;
  updatedBy: string;
  updatedAt: string;
}

/** Who a job is for: the ids that pick the preference levels, plus the job's own level. */
export interface PreferenceSubject {
  groupId: string | null;
  userId: string;
  projectId: string | null;
  task: Partial<Record<PreferenceKey, unknown>>;
}

/**
 * User preferences by scope, kept in memory (they are read on every dispatch decision) and
 * refreshed from PostgreSQL on NOTIFY or by polling, like runtime settings.
 */
export interface PreferencesService {
  get(scope: string, scopeId: string, key: string): Promise<Preference>;
  put(scope: string, scopeId: string, key: string, value: unknown, updatedBy: string): Promise<Preference>;
  delete(scope: string, scopeId: string, key: string): Promise<void>;
  /** Effective preferences: defaults < system < group < user < project < task. */
  resolve(subject: PreferenceSubject): Record<PreferenceKey, unknown>;
  /** Changes whenever any stored preference changes (same value on every replica). */
  version(): string;
  refresh(): Promise<void>;
}

/** The NOTIFY channel that tells every replica to reload preferences. */
export const PREFERENCES_CHANNEL = 'cynode_preferences';

/** The id of the single system scope. */
export const SYSTEM_SCOPE_ID = 'default';

export interface PreferencesDeps {
  knex: Knex;
  logger: Logger;
  notify: boolean;
  /** Called after a refresh that changed something. */
  onChange?: () => void;
}

interface Row {
  scope: Scope;
  scope_id: string;
  key: PreferenceKey;
  value: unknown;
  updated_by: string;
  updated_at: Date;
}

/** The in-memory copy every replica reads: the stored levels by `scope/id`, and their hash. */
interface Snapshot {
  levels: Map<string, Record<string, unknown>>;
  hash: string;
}

const checkScope = (scope: string, scopeId: string): Scope => {
  if (!(SCOPES as readonly string[]).includes(scope)) {
    throw new GatewayError(
      'preference_unknown',
      `no preference scope '${scope}' (use ${SCOPES.join(', ')}; the task level comes with the job)`,
    );
  }
  if (scope === 'system' && scopeId !== SYSTEM_SCOPE_ID)
    throw new GatewayError('preference_unknown', `the system scope has one id, '${SYSTEM_SCOPE_ID}'`);
  if (!/^[A-Za-z0-9_.:@-]{1,128}$/.test(scopeId))
    throw new GatewayError('bad_request', 'the scope id must be 1-128 letters, digits or _.:@-');
  return scope as Scope;
};

const checkKey = (key: string): PreferenceKey => {
  if (!isPreferenceKey(key)) throw new GatewayError('preference_unknown', `no preference named '${key}'`);
  return key;
};

const toPreference = (r: Row): Preference => ({
  scope: r.scope,
  scopeId: r.scope_id,
  key: r.key,
  value: r.value,
  updatedBy: r.updated_by,
  updatedAt: new Date(r.updated_at).toISOString(),
});

// Reads every stored preference into levels by scope, with a short hash of them all.
async function loadSnapshot(knex: Knex): Promise<Snapshot> {
  const rows = (await knex('preferences').select('scope', 'scope_id', 'key', 'value').orderBy(['scope', 'scope_id', 'key'])) as Row[];
  const levels = new Map<string, Record<string, unknown>>();
  for (const r of rows) {
    const id = `${r.scope}/${r.scope_id}`;
    levels.set(id, { ...levels.get(id), [r.key]: r.value });
  }
  const hash = createHash('sha256')
    .update(JSON.stringify(rows.map((r) => [r.scope, r.scope_id, r.key, r.value])))
    .digest('hex')
    .slice(0, 16);
  return { levels, hash };
}

async function getPreference(knex: Knex, scope: string, scopeId: string, key: string): Promise<Preference> {
  const row = (await knex('preferences')
    .where({ scope: checkScope(scope, scopeId), scope_id: scopeId, key: checkKey(key) })
    .first()) as Row | undefined;
  if (!row) throw new GatewayError('not_found', `preference '${key}' is not set for ${scope} '${scopeId}'`);
  return toPreference(row);
}

// Validates and upserts one preference; answers the stored row and what the change log says.
async function putPreference(knex: Knex, scope: string, scopeId: string, key: string, value: unknown, updatedBy: string) {
  const s = checkScope(scope, scopeId);
  const k = checkKey(key);
  const problem = preferenceProblem(k, value);
  if (problem) throw new GatewayError('preference_invalid', `preference '${k}' ${problem}`);
  const [row] = (await knex('preferences')
    .insert({
      scope: s,
      scope_id: scopeId,
      key: k,
      value: JSON.stringify(value),
      updated_by: updatedBy,
      updated_at: knex.fn.now(),
    })
    .onConflict(['scope', 'scope_id', 'key'])
    .merge()
    .returning('*')) as Row[];
  return { row: row!, what: { scope: s, scopeId, key: k, value, updatedBy } };
}

async function deletePreference(knex: Knex, scope: string, scopeId: string, key: string): Promise<void> {
  const n = await knex('preferences')
    .where({ scope: checkScope(scope, scopeId), scope_id: scopeId, key: checkKey(key) })
    .delete();
  if (n === 0) throw new GatewayError('not_found', `preference '${key}' is not set for ${scope} '${scopeId}'`);
}

const resolveLevels = (levels: Snapshot['levels'], subject: PreferenceSubject): Record<PreferenceKey, unknown> => ({
  ...defaultPreferences(),
  ...levels.get(`system/${SYSTEM_SCOPE_ID}`),
  ...(subject.groupId !== null && levels.get(`group/${subject.groupId}`)),
  ...levels.get(`user/${subject.userId}`),
  ...(subject.projectId !== null && levels.get(`project/${subject.projectId}`)),
  ...subject.task,
});

/** The preferences service over `preferences`, with the in-memory snapshot it resolves from. */
export function createPreferencesService(deps: PreferencesDeps): PreferencesService {
  const log = deps.logger.child({ component: 'preferences' });
  let snapshot: Snapshot = { levels: new Map(), hash: '' };

  const refresh = async () => {
    const next = await loadSnapshot(deps.knex);
    const previous = snapshot.hash;
    snapshot = next;
    if (next.hash !== previous) deps.onChange?.();
  };
  const changed = async (what: Record<string, unknown>) => {
    if (deps.notify) await deps.knex.raw('select pg_notify(?, ?)', [PREFERENCES_CHANNEL, 'changed']);
    await refresh();
    log.info(what, 'preference changed');
  };

  return {
    get: (scope, scopeId, key) => getPreference(deps.knex, scope, scopeId, key),
    async put(scope, scopeId, key, value, updatedBy) {
      const { row, what } = await putPreference(deps.knex, scope, scopeId, key, value, updatedBy);
      await changed(what);
      return toPreference(row);
    },
    async delete(scope, scopeId, key) {
      await deletePreference(deps.knex, scope, scopeId, key);
      await changed({ scope, scopeId, key, deleted: true });
    },
    resolve: (subject) => resolveLevels(snapshot.levels, subject),
    version: () => snapshot.hash,
    refresh,
  };
}
