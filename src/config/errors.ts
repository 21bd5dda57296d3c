/**
 * A configuration problem found at start. The message names the key, where the value came
 * from (file or env variable) and what was expected, so the operator can fix it without
 * reading code. The CLI prints it and exits with status 2.
 */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
