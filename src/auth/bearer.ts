import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import { GatewayError } from '../errors/index.js';
import { bearerToken } from '../lib/bearer.js';

/** Who a request authenticated as. */
export interface Principal {
  kind: 'admin' | 'reader' | 'bundle_reader' | 'metrics';
  id: string;
}

/** A static bearer token and the principal it stands for. */
export interface StaticToken {
  token: string;
  principal: Principal;
}

/**
 * Authenticates `Authorization: Bearer <token>` against static tokens, comparing SHA-256
 * digests in constant time, and sets `ctx.state.principal`. A request without a bearer
 * token, or with one no authenticator recognises, stops here with 401.
 */
export function bearerAuth(tokens: readonly StaticToken[], allowed: readonly Principal['kind'][]): Middleware {
  const digests = tokens.map((t) => ({ digest: sha256(t.token), principal: t.principal }));
  return async (ctx, next) => {
    const token = bearerToken(ctx.get('authorization'));
    if (!token) throw new GatewayError('unauthorized', 'a bearer token is required');
    const presented = sha256(token);
    let principal: Principal | undefined;
    for (const candidate of digests) {
      if (timingSafeEqual(candidate.digest, presented)) principal = candidate.principal;
    }
    if (!principal) throw new GatewayError('unauthorized', 'the bearer token is not valid');
    if (!allowed.includes(principal.kind)) throw new GatewayError('forbidden', 'this token may not use this endpoint');
    ctx.state.principal = principal;
    await next();
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
