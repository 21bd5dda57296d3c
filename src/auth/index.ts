export { resolveAdminToken } from './admin-token.js';
export { bearerAuth, type Principal, type StaticToken } from './bearer.js';
