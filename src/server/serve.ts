import type { Config } from '../config/index.js';
import { StartupError } from '../lib/startup-error.js';
import type { Logger } from '../logging/index.js';
import { type Authenticators, createRoleApp, type RegisteredRoute, registeredRoutes } from './app.js';
import type { Lifecycle } from './lifecycle.js';
import { type Listening, listen } from './listen.js';
import { listenerTls } from './tls.js';
import { portOf, type Role } from './roles.js';
import type { BoundRoute, Route } from './route.js';

/** What the listeners are built from. */
export interface ServeOptions {
  config: Config;
  logger: Logger;
  roles: readonly Role[];
  /** The route table: every route the gateway serves, as data. */
  table: readonly Omit<Route<never>, 'handler'>[];
  /** The routes the modules bound to their handlers; must be exactly the table. */
  routes: readonly BoundRoute[];
  authenticators: Authenticators;
  /** Runs when shutdown begins, before in-flight requests drain (e.g. answering long polls at once). */
  beforeDrain: (() => void)[];
}

/** The running listeners and the routes each role serves (what `/openapi.json` describes). */
export interface Serving {
  listening: Listening[];
  routes: Partial<Record<Role, RegisteredRoute[]>>;
}

/**
 * Checks the bound routes against the table, then builds one app per role and listens on its
 * port. At shutdown the listeners stop accepting and drain in-flight requests for up to
 * `server.shutdownTimeoutMs`.
 */
export async function startServers(options: ServeOptions, life: Lifecycle): Promise<Serving> {
  checkAgainstTable(options.table, options.routes);
  const { config, logger } = options;
  const listening: Listening[] = [];
  life.add('listeners', async () => {
    options.beforeDrain.forEach((fn) => fn());
    await Promise.all(listening.map((l) => l.close(config.server.shutdownTimeoutMs)));
  });
  const routes: Serving['routes'] = {};
  for (const role of options.roles) {
    const app = createRoleApp(role, {
      logger,
      routes: options.routes,
      authenticators: options.authenticators,
      maxBodyBytes: config.server.maxBodyBytes,
    });
    routes[role] = registeredRoutes(app);
    const port = portOf(role, config.server);
    const tls = listenerTls(role, config.server.tls);
    const bound = await listen(role, app, config.server.host, port, config.server, { tls, logger }).catch((err: NodeJS.ErrnoException) => {
      throw new StartupError(`cannot listen on ${config.server.host}:${port} for the ${role} role: ${err.code ?? err.message}`);
    });
    listening.push(bound);
  }
  return { listening, routes };
}

function checkAgainstTable(table: ServeOptions['table'], routes: readonly BoundRoute[]): void {
  const key = (r: { method: string; path: string }) => `${r.method.toUpperCase()} ${r.path}`;
  const bound = new Set(routes.map(key));
  const listed = new Set(table.map(key));
  const unlisted = [...bound].filter((k) => !listed.has(k));
  const unbound = [...listed].filter((k) => !bound.has(k));
  if (unlisted.length > 0) throw new StartupError(`routes missing from the route table: ${unlisted.join(', ')}`);
  if (unbound.length > 0) throw new StartupError(`routes in the route table that no module serves: ${unbound.join(', ')}`);
  if (bound.size !== routes.length) throw new StartupError('a route is bound twice');
}
