export { createLogger, type Logger, type LoggerOptions } from './logger.js';
export { CENSOR, REDACT_PATHS, redactUrl } from './redact.js';
