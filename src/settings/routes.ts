import type { Principal } from '../auth/index.js';
import { defineRoutes } from '../server/route.js';
import type { SettingsService } from './service.js';

/** `PUT|GET /v1/settings/{key}` (admin): body `{value}`, answer `{key, value, updatedBy, updatedAt}`. */
export const SETTINGS_ROUTES = defineRoutes<SettingsService>([
  {
    method: 'get',
    path: '/v1/settings/{key}',
    roles: ['control'],
    access: 'reader',
    summary: 'A runtime setting (e.g. cloud_routing.enabled, the kill switch).',
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: ['setting_unknown'],
    db: true,
    async handler(ctx, settings) {
      ctx.body = await settings.get(ctx.params.key!);
    },
  },
  {
    method: 'put',
    path: '/v1/settings/{key}',
    roles: ['control'],
    access: 'admin',
    summary: 'Sets a runtime setting; every replica applies it within a second.',
    body: { schema: 'Value' },
    ok: { 200: { description: 'Stored', schema: 'Any' } },
    errors: ['setting_unknown', 'setting_invalid'],
    db: true,
    async handler(ctx, settings) {
      const body = ctx.state.body as { value: unknown };
      ctx.body = await settings.put(ctx.params.key!, body.value, (ctx.state.principal as Principal).id);
    },
  },
]);
