export { buildOpenApiDocument, impliedErrors, type OpenApiDocument } from './document.js';
export { type Auth, type Operation, OPERATIONS } from './operations.js';
export { openApiDocument, openApiRoutes } from './routes.js';
