import type { Middleware } from 'koa';
import { isGatewayError } from '../errors/index.js';
import { createLogThrottles } from '../lib/log-throttle.js';
import type { Logger } from '../logging/index.js';
import { isDatabaseUnavailable } from '../storage/index.js';

/**
 * The one place errors become responses: a GatewayError is answered with its status and
 * `{error: {code, message}}`; anything else is a bug, logged with its stack and answered
 * with a bare `internal` that reveals nothing. Unavailability (503: the database, the
 * decision log) repeats on every request while it lasts, so it is logged once per interval
 * per code, with a count.
 */
export function errorMiddleware(logger: Logger): Middleware {
  const unavailable = createLogThrottles(logger);
  return async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      if (isGatewayError(err)) {
        ctx.status = err.status;
        const retryAfter = err.details?.retry_after_s;
        if (typeof retryAfter === 'number') ctx.set('Retry-After', String(Math.max(1, Math.ceil(retryAfter))));
        ctx.body = { error: { code: err.code, message: err.message, ...(err.details && { details: err.details }) } };
        const fields = { code: err.code, path: ctx.path, reqId: ctx.state.requestId };
        if (err.status === 503) unavailable(err.code).failure(fields, err.message);
        else if (err.status >= 500) logger.warn(fields, err.message);
        return;
      }
      // Koa's own errors (e.g. from body parsing) carry `expose` and a status.
      const httpErr = err as { status?: number; expose?: boolean; message?: string };
      if (httpErr.expose && httpErr.status && httpErr.status < 500) {
        ctx.status = httpErr.status;
        ctx.body = { error: { code: 'bad_request', message: httpErr.message ?? 'bad request' } };
        return;
      }
      // A database outage fails closed like any other: 503, a stable code, no internals.
      if (isDatabaseUnavailable(err)) {
        unavailable('database_unavailable').failure(
          { code: 'database_unavailable', path: ctx.path, reqId: ctx.state.requestId, err: String((err as Error).message).split('\n')[0] },
          'database unavailable',
        );
        ctx.status = 503;
        ctx.set('Retry-After', '1');
        ctx.body = { error: { code: 'database_unavailable', message: 'the database is unavailable; retry shortly' } };
        return;
      }
      logger.error({ err, path: ctx.path, reqId: ctx.state.requestId }, 'unhandled error');
      ctx.status = 500;
      ctx.body = { error: { code: 'internal', message: 'internal error' } };
    }
  };
}
