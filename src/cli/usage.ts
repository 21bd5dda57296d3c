import { errorMessage } from '../lib/error-message.js';

/** A command line that does not parse; the CLI prints it with the usage text and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Wraps a parsing failure as a UsageError. */
export function UsageErrorFor(err: unknown): UsageError {
  return new UsageError(errorMessage(err));
}
