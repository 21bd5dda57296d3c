import type { Middleware } from 'koa';
import { GatewayError } from '../errors/index.js';
import type { WorkerService } from './service.js';

/**
 * Authenticates a worker by its bearer JWT (signature, `iss`, `aud`, `typ`, expiry, current
 * session) and sets `ctx.state.worker`. Anything else stops the request with 401.
 */
export function workerAuth(workers: WorkerService): Middleware {
  return async (ctx, next) => {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
    if (!match) throw new GatewayError('unauthorized', 'a worker bearer token is required; POST /register first');
    ctx.state.worker = await workers.authenticate(match[1]!);
    await next();
  };
}
