import { type ErrorCode, statusOf } from './codes.js';

/**
 * An error the gateway means to report: a stable code, a message safe to show the caller
 * (never a secret, never internals), and optional structured details. Anything thrown that
 * is not a GatewayError is treated as a bug and answered with a bare `internal`.
 */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: ErrorOptions) {
    super(message, options);
    this.name = 'GatewayError';
    this.code = code;
    this.status = statusOf(code);
    this.details = details;
  }
}

/** True when `err` is a GatewayError (also across module copies, by shape). */
export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}
