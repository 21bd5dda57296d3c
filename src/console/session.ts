import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Knex } from 'knex';
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

/** Console sessions in the database; the cookie holds a random id, the table only its digest. */
export interface SessionStore {
  /** Opens a session for `principal`; returns the cookie value and the session. */
  open(principal: Principal): Promise<{ id: string; session: ConsoleSession }>;
  /** The live session of a cookie value, or undefined (unknown or expired). */
  find(id: string): Promise<ConsoleSession | undefined>;
  close(id: string): Promise<void>;
}

/** Options of the session store. */
export interface SessionOptions {
  ttlMs: number;
  /** At most this many live sessions; the oldest go first when a new one would pass it. */
  max: number;
  now?: () => number;
}

interface Row {
  kind: Principal['kind'];
  principal_id: string;
  csrf: string;
  expires_at: Date;
}

/**
 * Creates the session store over `console_sessions`, shared by every replica. Sessions live
 * `ttlMs` from sign-in; opening one first drops the expired ones and, past `max`, the oldest.
 * Only SHA-256 digests of cookie values are stored, so a database dump holds no usable cookie.
 */
export function createSessionStore(knex: Knex, { ttlMs, max, now = Date.now }: SessionOptions): SessionStore {
  const table = () => knex('console_sessions');
  return {
    async open(principal) {
      const at = new Date(now());
      await table().where('expires_at', '<=', at).delete();
      const keep = table()
        .select('id_digest')
        .orderBy('created_at', 'desc')
        .limit(max - 1);
      await table().whereNotIn('id_digest', keep).delete();
      const id = randomBytes(32).toString('base64url');
      const session = { principal, csrf: randomBytes(24).toString('base64url'), expiresAt: new Date(at.getTime() + ttlMs) };
      await table().insert({
        id_digest: digest(id),
        kind: principal.kind,
        principal_id: principal.id,
        csrf: session.csrf,
        created_at: at,
        expires_at: session.expiresAt,
      });
      return { id, session };
    },
    async find(id) {
      const row = (await table()
        .where({ id_digest: digest(id) })
        .where('expires_at', '>', new Date(now()))
        .first('kind', 'principal_id', 'csrf', 'expires_at')) as Row | undefined;
      return row && { principal: { kind: row.kind, id: row.principal_id }, csrf: row.csrf, expiresAt: new Date(row.expires_at) };
    },
    async close(id) {
      await table()
        .where({ id_digest: digest(id) })
        .delete();
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
    const session = await sessions.find(cookie);
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
