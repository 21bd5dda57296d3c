import type { Principal } from '../auth/index.js';
import type { Core } from '../core/module.js';
import type { Authenticators } from '../server/app.js';
import type { Lifecycle } from '../server/lifecycle.js';
import { bindRoutes, type BoundRoute } from '../server/route.js';
import { createFailureThrottle } from '../workers/throttle.js';
import { loadAssets } from './assets.js';
import { startBundleRecords } from './bundles.js';
import { CONSOLE_ROUTES, tokenSignIn, type VerifiableChain } from './routes.js';
import { createSessionStore, withConsoleSession } from './session.js';

/** A console session lasts this long from sign-in. */
const SESSION_TTL_MS = 8 * 3_600_000;
/** Live sessions kept at most (the oldest ends first). */
const MAX_SESSIONS = 1_000;
/** Failed sign-ins an address may make per window before it has to wait. */
const SIGN_IN_FAILURES = 10;
const SIGN_IN_WINDOW_MS = 5 * 60_000;

/** The console as the gateway runs it: its routes, and the admin/reader authenticators that also take its sessions. */
export interface ConsoleModule {
  routes: BoundRoute[];
  authenticators: Pick<Authenticators, 'admin' | 'reader'>;
}

/**
 * Builds the console: the built assets, the session store, and the admin and reader
 * authenticators wrapped so that a console session cookie (with its CSRF header on writes)
 * presents the same credential as the token it was opened with. `chains` are the hash-chained
 * logs the Audit page verifies; each replica records the bundles it activates (stopped on `life`).
 */
export function startConsole(core: Core, chains: Record<string, VerifiableChain>, life: Lifecycle): ConsoleModule {
  const bundles = startBundleRecords(core.db.knex, core.policy, core.logger);
  life.add('bundle records', () => bundles.stop());
  const sessions = createSessionStore(core.db.knex, { ttlMs: SESSION_TTL_MS, max: MAX_SESSIONS });
  const tokens: { token: string; principal: Principal }[] = [{ token: core.adminToken, principal: { kind: 'admin', id: 'admin' } }];
  const { readerToken } = core.config.auth;
  if (readerToken) tokens.push({ token: readerToken, principal: { kind: 'reader', id: 'reader' } });
  const deps = {
    assets: loadAssets(),
    sessions,
    signIn: tokenSignIn(tokens),
    chains: { decision_log: core.decisionLog, ...chains },
    throttle: createFailureThrottle(core.db.knex, SIGN_IN_FAILURES, SIGN_IN_WINDOW_MS),
    log: core.logger.child({ component: 'console' }),
    bundles,
  };
  return {
    routes: bindRoutes(CONSOLE_ROUTES, deps),
    authenticators: {
      admin: withConsoleSession(core.authenticators.admin, sessions, ['admin']),
      reader: withConsoleSession(core.authenticators.reader, sessions, ['admin', 'reader']),
    },
  };
}
