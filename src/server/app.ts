import Router from '@koa/router';
import Koa from 'koa';
import { GatewayError } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import { errorMiddleware } from './error-middleware.js';
import { requestLog } from './request-log.js';
import type { Role } from './roles.js';

/** What a role's HTTP app needs: the logger and a function that mounts the role's routes. */
export interface AppDeps {
  logger: Logger;
  mount: (router: Router) => void;
}

/**
 * Builds the Koa app of one role: request id and access log, the error middleware, the
 * role's routes, and 404/405 in the same error shape for everything else.
 */
export function createRoleApp(role: Role, deps: AppDeps): Koa {
  const log = deps.logger.child({ component: 'http', role });
  const app = new Koa({ proxy: false });
  app.silent = true; // errors are logged by errorMiddleware, not by Koa's default handler
  const router = new Router();
  deps.mount(router);

  app.use(requestLog(log));
  app.use(errorMiddleware(log));
  app.use(async (ctx, next) => {
    await next();
    if (ctx.status === 404 && ctx.body === undefined) {
      throw new GatewayError('not_found', `no route for ${ctx.method} ${ctx.path}`);
    }
  });
  app.use(router.routes());
  app.use(
    router.allowedMethods({
      throw: true,
      methodNotAllowed: () => new GatewayError('method_not_allowed', 'method not allowed on this path'),
      notImplemented: () => new GatewayError('method_not_allowed', 'method not supported'),
    }),
  );
  return app;
}
