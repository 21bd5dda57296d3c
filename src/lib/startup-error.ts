/**
 * The gateway cannot start (database unreachable past the startup window, port in use,
 * migrations failing). The CLI prints the message, never a stack, and exits non-zero.
 */
export class StartupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StartupError';
  }
}
