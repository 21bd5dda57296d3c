import { ROLES } from '../server/roles.js';
import { defineRoutes } from '../server/route.js';
import type { OpenApiDocument } from './types.js';

/** `GET /openapi.json`: the OpenAPI 3.1 document of every role's routes (public, like /healthz). */
export const OPENAPI_ROUTES = defineRoutes<() => OpenApiDocument>([
  {
    method: 'get',
    path: '/openapi.json',
    roles: ROLES,
    access: 'public',
    summary: 'This document.',
    ok: { 200: { description: 'OpenAPI 3.1', schema: 'Any' } },
    errors: [],
    handler(ctx, document) {
      ctx.set('Cache-Control', 'public, max-age=300');
      ctx.body = document();
    },
  },
]);
