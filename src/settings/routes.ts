import type Router from '@koa/router';
import type { Principal } from '../auth/index.js';
import { GatewayError } from '../errors/index.js';
import { readJson } from '../server/json-body.js';
import type { SettingsService } from './service.js';

/** `PUT|GET /v1/settings/{key}` (admin): body and answer `{key, value, updatedBy, updatedAt}`. */
export function settingsRoutes(router: Router, settings: SettingsService, maxBodyBytes: number): void {
  router.get('/v1/settings/:key', async (ctx) => {
    ctx.body = await settings.get(ctx.params.key!);
  });
  router.put('/v1/settings/:key', async (ctx) => {
    const body = (await readJson(ctx, maxBodyBytes)) as { value?: unknown } | null;
    if (body === null || typeof body !== 'object' || !('value' in body)) {
      throw new GatewayError('bad_request', 'send {"value": ...}');
    }
    const principal = ctx.state.principal as Principal;
    ctx.body = await settings.put(ctx.params.key!, body.value, principal.id);
  });
}
