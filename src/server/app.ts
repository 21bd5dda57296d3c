import Router from '@koa/router';
import Koa from 'koa';
import { GatewayError } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import { errorMiddleware } from './error-middleware.js';
import { requestLog } from './request-log.js';
import type { Role } from './roles.js';

/** A route a role's router serves: the path as registered (a string or a RegExp) and its methods. */
export interface RegisteredRoute {
  path: string | RegExp;
  methods: string[];
  /** Whether a request path reaches this route. */
  match(path: string): boolean;
}

/** The routes of an app built by `createRoleApp` (middleware-only layers left out). */
export function registeredRoutes(app: Koa): RegisteredRoute[] {
  const routers = app.middleware.map((mw) => (mw as { router?: Router }).router).filter((r): r is Router => r !== undefined);
  return routers.flatMap((router) =>
    router.stack.filter((layer) => layer.methods.length > 0).map((layer) => ({ path: layer.path, methods: [...layer.methods], match: (path: string) => layer.match(path) })),
  );
}

/** What a role's HTTP app needs: the logger and a function that mounts the role's routes. */
export interface AppDeps {
  logger: Logger;
  mount: (router: Router) => void;
  /** The largest request body any route accepts; a larger declared Content-Length is refused on every path. */
  maxBodyBytes: number;
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
  // Routes that read a body also check its length while streaming (readRaw); this covers the
  // routes that read none, so no path takes an oversized request.
  app.use(async (ctx, next) => {
    if (Number(ctx.get('content-length') || 0) > deps.maxBodyBytes) {
      ctx.set('Connection', 'close');
      throw new GatewayError('payload_too_large', `the body exceeds ${deps.maxBodyBytes} bytes`);
    }
    await next();
  });
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
