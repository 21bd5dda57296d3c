export { isPreferenceKey, PREFERENCES, type PreferenceKey, preferenceProblem, SCOPES, type Scope } from './registry.js';
export { PREFERENCE_ROUTES } from './routes.js';
export {
  createPreferencesService,
  PREFERENCES_CHANNEL,
  type Preference,
  type PreferencesService,
  type PreferenceSubject,
  SYSTEM_SCOPE_ID,
} from './service.js';
