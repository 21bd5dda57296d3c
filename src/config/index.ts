export { ConfigError } from './errors.js';
export { loadConfig, type ConfigSources } from './load.js';
export { RULES, type ConfigRule } from './rules.js';
export { type Config, CONFIG_SCHEMA, type ConfigKey, SCHEMA } from './schema.js';
