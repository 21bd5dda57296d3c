export { CONSOLE_ROUTES } from './routes.js';
export { CSRF_HEADER, SESSION_COOKIE } from './session.js';
