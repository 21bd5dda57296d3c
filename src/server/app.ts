import Router from '@koa/router';
import Koa, { type Middleware } from 'koa';
import { GatewayError } from '../errors/index.js';
import { StartupError } from '../lib/startup-error.js';
import type { Logger } from '../logging/index.js';
import { errorMiddleware } from './error-middleware.js';
import { readJson } from './json-body.js';
import { requestLog } from './request-log.js';
import type { Role } from './roles.js';
import { ACCESS_KINDS, type Access, type BoundRoute, type RouteContext } from './route.js';
import { createBodyValidators } from './validate.js';

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
    router.stack
      .filter((layer) => layer.methods.length > 0)
      .map((layer) => ({ path: layer.path, methods: [...layer.methods], match: (path: string) => layer.match(path) })),
  );
}

/** One authenticator per access kind but `public`: each sets its principal on `ctx.state` or refuses. */
export type Authenticators = Record<Exclude<Access, 'public'>, Middleware>;

/** What a role's HTTP app needs: the logger, the routes it may serve and the authenticators they name. */
export interface AppDeps {
  logger: Logger;
  /** Every bound route; the app mounts those whose `roles` include its role. */
  routes: readonly BoundRoute[];
  authenticators: Authenticators;
  /** The largest request body any route accepts; a larger declared Content-Length is refused on every path. */
  maxBodyBytes: number;
}

/**
 * Builds the Koa app of one role: request id and access log, the error middleware, then for
 * each route of the role its pipeline (authenticate → read and validate the body → handler),
 * and 404/405 in the same error shape for everything else. A route whose access kind has no
 * authenticator stops the gateway from starting.
 */
export function createRoleApp(role: Role, deps: AppDeps): Koa {
  const log = deps.logger.child({ component: 'http', role });
  const app = new Koa({ proxy: false });
  app.silent = true; // errors are logged by errorMiddleware, not by Koa's default handler
  const router = mountRoutes(role, deps);

  app.use(requestLog(log));
  app.use(errorMiddleware(log));
  app.use(async (ctx, next) => {
    ctx.state.role = role;
    await next();
  });
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

function mountRoutes(role: Role, deps: AppDeps): Router {
  const router = new Router();
  const validators = createBodyValidators();
  for (const route of deps.routes.filter((r) => r.roles.includes(role))) {
    const stages: Middleware[] = [];
    const { errorShape } = route;
    if (errorShape) {
      stages.push(async (ctx, next) => {
        ctx.state.errorShape = errorShape;
        await next();
      });
    }
    const auth = authenticatorOf(route, deps.authenticators);
    if (auth) stages.push(auth);
    if (route.body && !route.body.raw) {
      const { optional } = route.body;
      const validate = validators(route.body);
      stages.push(async (ctx, next) => {
        if (!optional || ctx.request.length || ctx.get('transfer-encoding')) {
          ctx.state.body = validate(await readJson(ctx, deps.maxBodyBytes));
        }
        await next();
      });
    }
    stages.push(async (ctx) => {
      await route.handle(ctx as RouteContext);
    });
    router[route.method](routerPath(route.path), ...stages);
  }
  return router;
}

function authenticatorOf(route: BoundRoute, authenticators: Authenticators): Middleware | undefined {
  const access = route.access as Access | undefined;
  if (access === undefined || !(ACCESS_KINDS as readonly string[]).includes(access)) {
    throw new StartupError(`route ${route.method.toUpperCase()} ${route.path} names no access kind (one of ${ACCESS_KINDS.join(', ')})`);
  }
  if (access === 'public') return undefined;
  const auth = authenticators[access];
  if (!auth)
    throw new StartupError(`route ${route.method.toUpperCase()} ${route.path} needs the '${access}' authenticator, which no part supplies`);
  return auth;
}

/** The router form of an OpenAPI path: `{id}` → `:id`; a trailing `{path}` spans slashes. */
function routerPath(path: string): string | RegExp {
  if (path.endsWith('/{path}')) {
    const prefix = path.slice(0, -'/{path}'.length).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    return new RegExp(`^${prefix}\\/(.+)$`);
  }
  return path.replace(/\{(\w+)\}/g, ':$1');
}
