export { buildOpenApiDocument, impliedErrors } from './document.js';
export type { OpenApiDocument } from './types.js';
export { type Auth, type Operation, OPERATIONS } from './operations.js';
export { OPENAPI_ROUTES } from './routes.js';
