import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Logger } from '../logging/index.js';

/**
 * Gives each request an id (echoed as `x-request-id`) and writes one access log line when it
 * ends. Only method, path, status and timing are logged: never headers or bodies, which
 * carry PSKs and tokens.
 */
export function requestLog(logger: Logger): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const incoming = ctx.get('x-request-id');
    const requestId = /^[A-Za-z0-9._-]{1,128}$/.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    ctx.set('x-request-id', requestId);
    try {
      await next();
    } finally {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      // A 503 is a fail-closed refusal whose cause the error middleware logs, once per interval.
      const level = ctx.status >= 500 && ctx.status !== 503 ? 'warn' : 'debug';
      logger[level](
        { reqId: requestId, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(ms * 100) / 100 },
        'request',
      );
    }
  };
}
