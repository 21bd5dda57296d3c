import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type Router from '@koa/router';
import { packageRoot } from '../lib/package-root.js';
import { buildOpenApiDocument, type OpenApiDocument } from './document.js';

let cached: OpenApiDocument | undefined;

/** The document, built once per process with the package's version. */
export function openApiDocument(): OpenApiDocument {
  cached ??= buildOpenApiDocument((JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version);
  return cached;
}

/** `GET /openapi.json`: the OpenAPI 3.1 document of every role's routes (public, like /healthz). */
export function openApiRoutes(router: Router): void {
  router.get('/openapi.json', (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = openApiDocument();
  });
}
