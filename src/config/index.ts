export { ConfigError } from './errors.js';
export { loadConfig, type ConfigSources } from './load.js';
export { type Config, SCHEMA } from './schema.js';
