export { buildOpenApiDocument, impliedErrors, type OpenApiDocument } from './document.js';
export { type Auth, type Operation, OPERATIONS } from './operations.js';
export { OPENAPI_ROUTES } from './routes.js';
