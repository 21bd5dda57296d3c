import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';

/** The cookie a console session travels in (HttpOnly, SameSite=Strict, Secure over TLS). */
export const SESSION_COOKIE = 'cynode_console';
/** The header every console write carries, holding the session's CSRF token. */
export const CSRF_HEADER = 'x-cynode-csrf';

/** One signed-in console user: the principal its token stood for, and its CSRF token. */
export interface ConsoleSession {
  principal: Principal;
  csrf: string;
  expiresAt: Date;
}

/** Sessions kept in this process; the cookie holds a random id, the store only its digest. */
export interface SessionStore {
  /** Opens a session for `principal`; returns the cookie value and the session. */
  open(principal: Principal): { id: string; session: ConsoleSession };
  /** The live session of a cookie value, or undefined (unknown or expired). */
  find(id: string): ConsoleSession | undefined;
  close(id: string): void;
}

/** Options of the session store. */
export interface SessionOptions {
  ttlMs: number;
  /** At most this many live sessions; the oldest goes first when a new one would pass it. */
  max: number;
  now?: () => number;
}

/**
 * Creates the in-memory session store. Sessions live `ttlMs` from sign-in and end with the
 * process (signing in again is one token paste); only SHA-256 digests of cookie values are
 * kept, so a heap dump holds no usable cookie.
 */
export function createSessionStore({ ttlMs, max, now = Date.now }: SessionOptions): SessionStore {
  const sessions = new Map<string, ConsoleSession>();
  const expired = (s: ConsoleSession) => s.expiresAt.getTime() <= now();
  return {
    open(principal) {
      for (const [key, s] of sessions) if (expired(s)) sessions.delete(key);
      while (sessions.size >= max) sessions.delete(sessions.keys().next().value!);
      const id = randomBytes(32).toString('base64url');
      const session = { principal, csrf: randomBytes(24).toString('base64url'), expiresAt: new Date(now() + ttlMs) };
      sessions.set(digest(id), session);
      return { id, session };
    },
    find(id) {
      const key = digest(id);
      const session = sessions.get(key);
      if (session && expired(session)) sessions.delete(key);
      return session && !expired(session) ? session : undefined;
    },
    close(id) {
      sessions.delete(digest(id));
    },
  };
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Another way to present the admin or read-only credential: a request with no Authorization
 * header and a console session cookie is authenticated as the principal the session was
 * opened for; a write must also carry the session's CSRF token in `X-Cynode-CSRF`. Requests
 * with an Authorization header go to the bearer authenticator unchanged.
 */
export function withConsoleSession(bearer: Middleware, sessions: SessionStore, allowed: readonly Principal['kind'][]): Middleware {
  return async (ctx, next) => {
    const cookie = ctx.get('authorization') ? undefined : ctx.cookies.get(SESSION_COOKIE);
    if (!cookie) return bearer(ctx, next);
    const session = sessions.find(cookie);
    if (!session) throw new GatewayError('unauthorized', 'the console session has ended; sign in again');
    if (!allowed.includes(session.principal.kind)) throw new GatewayError('forbidden', 'this session may not use this endpoint');
    if (!SAFE_METHODS.has(ctx.method) && !sameSecret(ctx.get(CSRF_HEADER), session.csrf)) {
      throw new GatewayError('forbidden', `a console write needs the session's ${CSRF_HEADER} header`);
    }
    ctx.state.principal = session.principal;
    ctx.state.consoleSession = session;
    await next();
  };
}

function sameSecret(presented: string, expected: string): boolean {
  return timingSafeEqual(createHash('sha256').update(presented).digest(), createHash('sha256').update(expected).digest());
}

function digest(id: string): string {
  return createHash('sha256').update(id).digest('base64url');
}
