import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { errorMessage } from '../lib/error-message.js';
import { createLogThrottle } from '../lib/log-throttle.js';
import { startPeriodic } from '../lib/periodic.js';
import type { Logger } from '../logging/index.js';
import type { PolicyEngine } from '../policy/index.js';
import { createPreferencesService, PREFERENCES_CHANNEL, type PreferencesService } from '../preferences/index.js';
import { createSettingsService, SETTINGS_CHANNEL, type SettingsService } from '../settings/index.js';
import type { Lifecycle } from '../server/lifecycle.js';
import type { ChannelHandlers } from '../storage/listener.js';

const RUNTIME_POLL_MS = 5_000;

/**
 * The runtime data every decision reads besides its own input: settings (the kill switch),
 * layered into policy data as `data.runtime`, and user preferences. Both live in PostgreSQL,
 * spread by NOTIFY, and are re-read by a poller in case a notification is missed.
 */
export interface Runtime {
  settings: SettingsService;
  preferences: PreferencesService;
  /**
   * A version of everything a dispatch decision depends on besides the job and the worker:
   * the active bundle, the settings and the preferences. A decision made under another epoch
   * may no longer hold.
   */
  epoch(): string;
  /** Calls `fn` whenever the bundle, a setting or a preference changes. */
  onChange(fn: () => void): void;
  /** The NOTIFY channels that make every replica refresh. */
  channels: ChannelHandlers;
}

/** Loads settings and preferences, pushes settings into the engine, and keeps both fresh. */
export async function startRuntime(
  deps: { knex: Knex; logger: Logger; engine: PolicyEngine; notify: boolean },
  life: Lifecycle,
): Promise<Runtime> {
  const listeners: (() => void)[] = [];
  const changed = () => listeners.forEach((fn) => fn());
  let settingsJson = '{}';
  const settings = createSettingsService({
    knex: deps.knex,
    logger: deps.logger,
    notify: deps.notify,
    onChange: (all) => {
      const json = JSON.stringify(all);
      if (json === settingsJson) return;
      settingsJson = json;
      deps.engine.setRuntimeData({ settings: all });
      changed();
    },
  });
  await settings.refresh();
  const preferences = createPreferencesService({ knex: deps.knex, logger: deps.logger, notify: deps.notify, onChange: changed });
  await preferences.refresh();
  deps.engine.onActivate(changed);
  const failures = createLogThrottle(deps.logger);
  const refresh = () => {
    const warn = (err: unknown) => failures.failure({ err: errorMessage(err) }, 'runtime data refresh failed');
    settings.refresh().catch(warn);
    preferences.refresh().catch(warn);
  };
  const poller = startPeriodic(
    async () => refresh(),
    RUNTIME_POLL_MS,
    () => undefined,
  );
  life.add('runtime data poller', () => poller.stop());
  return {
    settings,
    preferences,
    epoch: () => {
      const settingsHash = createHash('sha256').update(settingsJson).digest('hex').slice(0, 12);
      return `${deps.engine.status().active?.digest.slice(0, 16) ?? 'none'}:${settingsHash}:${preferences.version()}`;
    },
    onChange: (fn) => listeners.push(fn),
    channels: { [SETTINGS_CHANNEL]: refresh, [PREFERENCES_CHANNEL]: refresh },
  };
}
