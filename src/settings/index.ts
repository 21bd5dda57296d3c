export { SETTINGS, type SettingKey } from './registry.js';
export { SETTINGS_ROUTES } from './routes.js';
export { createSettingsService, SETTINGS_CHANNEL, type Setting, type SettingsService } from './service.js';
