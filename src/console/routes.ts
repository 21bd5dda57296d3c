import { createHash, timingSafeEqual } from 'node:crypto';
import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import type { ChainBreak } from '../lib/hash-chain.js';
import type { Logger } from '../logging/index.js';
import { LIMIT_PARAM, queryLimit } from '../server/query-params.js';
import { defineRoutes, type RouteContext } from '../server/route.js';
import { type Asset, CONSOLE_CSP } from './assets.js';
import type { BundleRecords } from './bundles.js';
import type { FailureThrottle } from '../workers/throttle.js';
import { type ConsoleSession, SESSION_COOKIE, type SessionStore } from './session.js';

/** A hash-chained log the console reports on (decision log, api.call audit, tool audit). */
export interface VerifiableChain {
  verify(): Promise<{ rows: number; break: ChainBreak | undefined }>;
}

/** What the console routes need. */
export interface ConsoleRouteDeps {
  assets: Map<string, Asset>;
  sessions: SessionStore;
  /** The tokens a console user may sign in with, and the principal each stands for. */
  signIn: (token: string) => Principal | undefined;
  chains: Record<string, VerifiableChain>;
  /** Failed sign-ins per source address: past the limit the address waits, right token or not. */
  throttle: FailureThrottle;
  log: Logger;
  bundles: Pick<BundleRecords, 'history' | 'replicas'>;
}

const CONTROL = ['control'] as const;

/**
 * The console: its page and built assets (public, under a strict CSP), sign-in that exchanges
 * the admin or read-only token for a session cookie, the session itself, and the chain
 * verification status it shows. Everything else the console does goes through the admin API.
 */
export const CONSOLE_ROUTES = defineRoutes<ConsoleRouteDeps>([
  {
    method: 'get',
    path: '/console',
    roles: CONTROL,
    access: 'public',
    summary: 'The operator console (a single page; sign in with the admin or read-only token).',
    ok: { 200: { description: 'The console page', mediaType: 'text/html' } },
    errors: ['not_found'],
    handler(ctx, { assets }) {
      serveAsset(ctx, assets, 'index.html');
    },
  },
  {
    method: 'get',
    path: '/console/assets/{path}',
    roles: CONTROL,
    access: 'public',
    summary: "The console's scripts and styles, as built from this repository.",
    ok: { 200: { description: 'The asset', mediaType: 'application/octet-stream' } },
    errors: ['not_found'],
    handler(ctx, { assets }) {
      serveAsset(ctx, assets, ctx.path.slice('/console/assets/'.length));
    },
  },
  {
    method: 'post',
    path: '/console/session',
    roles: CONTROL,
    access: 'public',
    summary: 'Signs in: exchanges the admin or read-only token for an HttpOnly session cookie and a CSRF token.',
    body: { schema: 'ConsoleSignIn' },
    ok: { 201: { description: 'The session', schema: 'ConsoleSession' } },
    errors: ['unauthorized', 'rate_limited'],
    db: true,
    async handler(ctx, { sessions, signIn, throttle, log }) {
      const source = ctx.request.ip;
      // Counted apart from registrations (its own key), across replicas like them.
      const attempt = await throttle.attempt(`console:${source}`, async () => signIn((ctx.state.body as { token: string }).token) ?? null);
      if (attempt.retryAfterSeconds > 0) {
        const wait = attempt.retryAfterSeconds;
        ctx.set('Retry-After', String(wait));
        throw new GatewayError('rate_limited', 'too many failed sign-ins from this address; try later', { retry_after_s: wait });
      }
      const principal = attempt.value;
      if (!principal) {
        log.warn({ source }, 'console sign-in with a token that is neither the admin nor the read-only token');
        throw new GatewayError('unauthorized', 'that token is not the admin or the read-only token');
      }
      log.info({ source, principal: principal.kind }, 'console sign-in');
      const { id, session } = await sessions.open(principal);
      ctx.cookies.set(SESSION_COOKIE, id, {
        httpOnly: true,
        sameSite: 'strict',
        secure: ctx.secure,
        path: '/',
        expires: session.expiresAt,
        overwrite: true,
      });
      ctx.set('Cache-Control', 'no-store');
      ctx.status = 201;
      ctx.body = sessionAnswer(session);
    },
  },
  {
    method: 'get',
    path: '/console/session',
    roles: CONTROL,
    access: 'reader',
    summary: 'The signed-in console session: who, its CSRF token, when it ends.',
    ok: { 200: { description: 'The session', schema: 'ConsoleSession' } },
    errors: ['not_found'],
    db: true,
    handler(ctx) {
      const session = ctx.state.consoleSession as ConsoleSession | undefined;
      if (!session) throw new GatewayError('not_found', 'this request carries no console session');
      ctx.set('Cache-Control', 'no-store');
      ctx.body = sessionAnswer(session);
    },
  },
  {
    method: 'delete',
    path: '/console/session',
    roles: CONTROL,
    access: 'reader',
    summary: 'Signs out: ends the console session and clears its cookie.',
    ok: { 204: { description: 'Signed out' } },
    errors: [],
    db: true,
    async handler(ctx, { sessions }) {
      const cookie = ctx.cookies.get(SESSION_COOKIE);
      if (cookie) await sessions.close(cookie);
      ctx.cookies.set(SESSION_COOKIE, '', { httpOnly: true, sameSite: 'strict', secure: ctx.secure, path: '/', expires: new Date(0) });
      ctx.status = 204;
    },
  },
  {
    method: 'get',
    path: '/v1/policy/history',
    roles: CONTROL,
    access: 'reader',
    summary: 'Bundle activations on every replica, newest first (revision, digest, source, when).',
    params: [LIMIT_PARAM],
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, { bundles }) {
      ctx.body = { activations: await bundles.history(queryLimit(ctx.query)) };
    },
  },
  {
    method: 'get',
    path: '/v1/policy/replicas',
    roles: CONTROL,
    access: 'reader',
    summary: 'The bundle each replica runs, when it was activated, and when the replica last said so.',
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, { bundles }) {
      ctx.body = { replicas: await bundles.replicas() };
    },
  },
  {
    method: 'get',
    path: '/v1/audit/chains',
    roles: CONTROL,
    access: 'reader',
    summary: 'Verifies every hash chain (decision log, api.call, tool and worker audit): rows and the first break.',
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [],
    db: true,
    async handler(ctx, { chains }) {
      const entries = await Promise.all(
        Object.entries(chains).map(async ([name, chain]) => {
          const { rows, break: broken } = await chain.verify();
          return [name, { rows, intact: broken === undefined, break: broken ?? null }] as const;
        }),
      );
      ctx.body = { verified_at: new Date().toISOString(), chains: Object.fromEntries(entries) };
    },
  },
]);

function serveAsset(ctx: RouteContext, assets: Map<string, Asset>, name: string): void {
  const asset = assets.get(name);
  if (!asset) {
    const why = assets.size === 0 ? 'the console is not built (npm run build)' : `no console asset '${name}'`;
    throw new GatewayError('not_found', why);
  }
  ctx.set('Content-Security-Policy', CONSOLE_CSP);
  ctx.set('X-Content-Type-Options', 'nosniff');
  ctx.set('X-Frame-Options', 'DENY');
  ctx.set('Referrer-Policy', 'no-referrer');
  ctx.set('Cache-Control', 'no-cache');
  ctx.type = asset.type;
  ctx.body = asset.body;
}

function sessionAnswer(session: ConsoleSession) {
  return { principal: session.principal, csrf: session.csrf, expires_at: session.expiresAt.toISOString() };
}

/** Resolves a pasted token to the admin or reader principal, comparing SHA-256 digests in constant time. */
export function tokenSignIn(tokens: readonly { token: string; principal: Principal }[]): (token: string) => Principal | undefined {
  const sha = (t: string) => createHash('sha256').update(t).digest();
  const digests = tokens.map((t) => ({ digest: sha(t.token), principal: t.principal }));
  return (token) => {
    const presented = sha(token);
    let found: Principal | undefined;
    for (const candidate of digests) if (timingSafeEqual(candidate.digest, presented)) found = candidate.principal;
    return found;
  };
}
