import type { Middleware } from 'koa';
import { GatewayError } from '../errors/index.js';
import { bearerToken } from '../lib/bearer.js';
import type { WorkerService } from './service.js';

/**
 * Authenticates a worker by its bearer JWT (signature, `iss`, `aud`, `typ`, expiry, current
 * session) and sets `ctx.state.worker`. Anything else stops the request with 401.
 */
export function workerAuth(workers: WorkerService): Middleware {
  return async (ctx, next) => {
    const token = bearerToken(ctx.get('authorization'));
    if (!token) throw new GatewayError('unauthorized', 'a worker bearer token is required; POST /register first');
    ctx.state.worker = await workers.authenticate(token);
    await next();
  };
}
