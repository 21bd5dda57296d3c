import type { Middleware } from 'koa';
import { isGatewayError } from '../errors/index.js';
import { createLogThrottles } from '../lib/log-throttle.js';
import type { Logger } from '../logging/index.js';
import { isDatabaseUnavailable } from '../storage/index.js';
import type { ErrorShape, Refusal } from './route.js';

/** The gateway's own error body: `{error: {code, message, details?}}`. */
const gatewayShape: ErrorShape = (r) => ({
  status: r.status,
  body: { error: { code: r.code, message: r.message, ...(r.details && { details: r.details }) } },
});

/**
 * The one place errors become responses: a GatewayError is answered with its status and
 * `{error: {code, message}}` (or in the shape of the API a route stands in for, when its
 * entry names an `errorShape`: `ctx.state.errorShape`); anything else is a bug, logged with
 * its stack and answered with a bare `internal` that reveals nothing. Unavailability (503: the database, the
 * decision log) repeats on every request while it lasts, so it is logged once per interval
 * per code, with a count.
 */
export function errorMiddleware(logger: Logger): Middleware {
  const unavailable = createLogThrottles(logger);
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      const answer = (r: Refusal) => {
        const { status, body } = ((ctx.state.errorShape as ErrorShape | undefined) ?? gatewayShape)(r);
        ctx.status = status;
        ctx.body = body;
      };
      if (isGatewayError(err)) {
        const retryAfter = err.details?.retry_after_s;
        if (typeof retryAfter === 'number') ctx.set('Retry-After', String(Math.max(1, Math.ceil(retryAfter))));
        answer({ status: err.status, code: err.code, message: err.message, ...(err.details && { details: err.details }) });
        const fields = { code: err.code, path: ctx.path, reqId: ctx.state.requestId };
        if (err.status === 503) unavailable(err.code).failure(fields, err.message);
        else if (err.status >= 500) logger.warn(fields, err.message);
        return;
      }
      // Koa's own errors (e.g. from body parsing) carry `expose` and a status.
      const httpErr = err as { status?: number; expose?: boolean; message?: string };
      if (httpErr.expose && httpErr.status && httpErr.status < 500) {
        answer({ status: httpErr.status, code: 'bad_request', message: httpErr.message ?? 'bad request' });
        return;
      }
      // A database outage fails closed like any other: 503, a stable code, no internals.
      if (isDatabaseUnavailable(err)) {
        unavailable('database_unavailable').failure(
          { code: 'database_unavailable', path: ctx.path, reqId: ctx.state.requestId, err: String((err as Error).message).split('\n')[0] },
          'database unavailable',
        );
        ctx.set('Retry-After', '1');
        answer({ status: 503, code: 'database_unavailable', message: 'the database is unavailable; retry shortly' });
        return;
      }
      logger.error({ err, path: ctx.path, reqId: ctx.state.requestId }, 'unhandled error');
      answer({ status: 500, code: 'internal', message: 'internal error' });
    }
  };
}
