import type { Principal } from '../auth/index.js';
import { defineRoutes } from '../server/route.js';
import type { PreferencesService } from './service.js';

const PATH = '/v1/preferences/{scope}/{id}/{key}';
const ERRORS = ['preference_unknown', 'preference_invalid'] as const;

/** `PUT|GET|DELETE /v1/preferences/{scope}/{id}/{key}` (admin): body `{value}`. */
export const PREFERENCE_ROUTES = defineRoutes<PreferencesService>([
  {
    method: 'get',
    path: PATH,
    roles: ['control'],
    access: 'reader',
    summary: 'A user preference (scope: system, group, user, project, task).',
    ok: { 200: { description: 'OK', schema: 'Any' } },
    errors: [...ERRORS],
    db: true,
    async handler(ctx, preferences) {
      ctx.body = await preferences.get(ctx.params.scope!, ctx.params.id!, ctx.params.key!);
    },
  },
  {
    method: 'put',
    path: PATH,
    roles: ['control'],
    access: 'admin',
    summary: 'Sets a preference.',
    body: { schema: 'Value' },
    ok: { 200: { description: 'Stored', schema: 'Any' } },
    errors: [...ERRORS],
    db: true,
    async handler(ctx, preferences) {
      const body = ctx.state.body as { value: unknown };
      const principal = ctx.state.principal as Principal;
      ctx.body = await preferences.put(ctx.params.scope!, ctx.params.id!, ctx.params.key!, body.value, principal.id);
    },
  },
  {
    method: 'delete',
    path: PATH,
    roles: ['control'],
    access: 'admin',
    summary: 'Removes a preference.',
    ok: { 204: { description: 'Removed' } },
    errors: [...ERRORS],
    db: true,
    async handler(ctx, preferences) {
      await preferences.delete(ctx.params.scope!, ctx.params.id!, ctx.params.key!);
      ctx.status = 204;
    },
  },
]);
