import type Router from '@koa/router';
import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { readJson } from '../server/json-body.js';
import type { PreferencesService } from './service.js';

/** `PUT|GET|DELETE /v1/preferences/{scope}/{id}/{key}` (admin): body `{value}`. */
export function preferencesRoutes(router: Router, preferences: PreferencesService, maxBodyBytes: number): void {
  router.get('/v1/preferences/:scope/:id/:key', async (ctx) => {
    ctx.body = await preferences.get(ctx.params.scope!, ctx.params.id!, ctx.params.key!);
  });
  router.put('/v1/preferences/:scope/:id/:key', async (ctx) => {
    const body = (await readJson(ctx, maxBodyBytes)) as { value?: unknown } | null;
    if (body === null || typeof body !== 'object' || !('value' in body)) throw new GatewayError('bad_request', 'send {"value": ...}');
    const principal = ctx.state.principal as Principal;
    ctx.body = await preferences.put(ctx.params.scope!, ctx.params.id!, ctx.params.key!, body.value, principal.id);
  });
  router.delete('/v1/preferences/:scope/:id/:key', async (ctx) => {
    await preferences.delete(ctx.params.scope!, ctx.params.id!, ctx.params.key!);
    ctx.status = 204;
  });
}
