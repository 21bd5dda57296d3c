import type { Knex } from 'knex';
import { GatewayError } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import { isSettingKey, type SettingKey, validSettingValue } from './registry.js';

/** A stored setting. */
export interface Setting {
  key: SettingKey;
  value: unknown;
  updatedBy: string;
  updatedAt: string;
}

/** Runtime settings in PostgreSQL, pushed into policy data the moment they change. */
export interface SettingsService {
  get(key: string): Promise<Setting>;
  put(key: string, value: unknown, updatedBy: string): Promise<Setting>;
  /** Re-reads every setting and hands them to `onChange`; called on NOTIFY and by the poller. */
  refresh(): Promise<void>;
}

/** The NOTIFY channel that tells every replica to refresh its runtime data. */
export const SETTINGS_CHANNEL = 'cynode_settings';

/** Dependencies of the settings service. */
export interface SettingsDeps {
  knex: Knex;
  logger: Logger;
  /** Receives all settings as `{key: value}` whenever they may have changed. */
  onChange: (settings: Record<string, unknown>) => void;
  /** Whether the database supports NOTIFY (PostgreSQL); the embedded one has one process only. */
  notify: boolean;
}

export function createSettingsService(deps: SettingsDeps): SettingsService {
  const log = deps.logger.child({ component: 'settings' });
  const known = (key: string): SettingKey => {
    if (!isSettingKey(key)) throw new GatewayError('setting_unknown', `no setting named '${key}'`);
    return key;
  };
  const refresh = async () => {
    const rows = (await deps.knex('settings').select('key', 'value')) as { key: string; value: unknown }[];
    deps.onChange(Object.fromEntries(rows.map((r) => [r.key, r.value])));
  };
  return {
    async get(key) {
      const row = (await deps
        .knex('settings')
        .where({ key: known(key) })
        .first()) as Row | undefined;
      if (!row) throw new GatewayError('not_found', `setting '${key}' has not been set`);
      return toSetting(row);
    },
    async put(key, value, updatedBy) {
      const k = known(key);
      if (!validSettingValue(k, value)) throw new GatewayError('setting_invalid', `setting '${k}' takes a value of another type`);
      const [row] = (await deps
        .knex('settings')
        .insert({ key: k, value: JSON.stringify(value), updated_by: updatedBy, updated_at: deps.knex.fn.now() })
        .onConflict('key')
        .merge()
        .returning('*')) as Row[];
      if (deps.notify) await deps.knex.raw('select pg_notify(?, ?)', [SETTINGS_CHANNEL, k]);
      await refresh();
      log.info({ key: k, value, updatedBy }, 'setting changed');
      return toSetting(row!);
    },
    refresh,
  };
}

interface Row {
  key: SettingKey;
  value: unknown;
  updated_by: string;
  updated_at: Date;
}

function toSetting(r: Row): Setting {
  return { key: r.key, value: r.value, updatedBy: r.updated_by, updatedAt: new Date(r.updated_at).toISOString() };
}
