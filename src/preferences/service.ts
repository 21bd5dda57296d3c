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

export function createPreferencesService(deps: PreferencesDeps): PreferencesService {
  const log = deps.logger.child({ component: 'preferences' });
  let levels = new Map<string, Record<string, unknown>>();
  let hash = '';

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

  const refresh = async () => {
    const rows = (await deps
      .knex('preferences')
      .select('scope', 'scope_id', 'key', 'value')
      .orderBy(['scope', 'scope_id', 'key'])) as Row[];
    const next = new Map<string, Record<string, unknown>>();
    for (const r of rows) {
      const id = `${r.scope}/${r.scope_id}`;
      next.set(id, { ...next.get(id), [r.key]: r.value });
    }
    const nextHash = createHash('sha256')
      .update(JSON.stringify(rows.map((r) => [r.scope, r.scope_id, r.key, r.value])))
      .digest('hex')
      .slice(0, 16);
    levels = next;
    if (nextHash !== hash) {
      hash = nextHash;
      deps.onChange?.();
    }
  };

  const toPreference = (r: Row): Preference => ({
    scope: r.scope,
    scopeId: r.scope_id,
    key: r.key,
    value: r.value,
    updatedBy: r.updated_by,
    updatedAt: new Date(r.updated_at).toISOString(),
  });
  const changed = async (what: Record<string, unknown>) => {
    if (deps.notify) await deps.knex.raw('select pg_notify(?, ?)', [PREFERENCES_CHANNEL, 'changed']);
    await refresh();
    log.info(what, 'preference changed');
  };

  return {
    async get(scope, scopeId, key) {
      const row = (await deps
        .knex('preferences')
        .where({ scope: checkScope(scope, scopeId), scope_id: scopeId, key: checkKey(key) })
        .first()) as Row | undefined;
      if (!row) throw new GatewayError('not_found', `preference '${key}' is not set for ${scope} '${scopeId}'`);
      return toPreference(row);
    },
    async put(scope, scopeId, key, value, updatedBy) {
      const s = checkScope(scope, scopeId);
      const k = checkKey(key);
      const problem = preferenceProblem(k, value);
      if (problem) throw new GatewayError('preference_invalid', `preference '${k}' ${problem}`);
      const [row] = (await deps
        .knex('preferences')
        .insert({
          scope: s,
          scope_id: scopeId,
          key: k,
          value: JSON.stringify(value),
          updated_by: updatedBy,
          updated_at: deps.knex.fn.now(),
        })
        .onConflict(['scope', 'scope_id', 'key'])
        .merge()
        .returning('*')) as Row[];
      await changed({ scope: s, scopeId, key: k, value, updatedBy });
      return toPreference(row!);
    },
    async delete(scope, scopeId, key) {
      const n = await deps
        .knex('preferences')
        .where({ scope: checkScope(scope, scopeId), scope_id: scopeId, key: checkKey(key) })
        .delete();
      if (n === 0) throw new GatewayError('not_found', `preference '${key}' is not set for ${scope} '${scopeId}'`);
      await changed({ scope, scopeId, key, deleted: true });
    },
    resolve(subject) {
      return {
        ...defaultPreferences(),
        ...levels.get(`system/${SYSTEM_SCOPE_ID}`),
        ...(subject.groupId !== null && levels.get(`group/${subject.groupId}`)),
        ...levels.get(`user/${subject.userId}`),
        ...(subject.projectId !== null && levels.get(`project/${subject.projectId}`)),
        ...subject.task,
      };
    },
    version: () => hash,
    refresh,
  };
}
