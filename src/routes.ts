import { CONSOLE_ROUTES } from './console/index.js';
import { DECISION_ROUTES, POLICY_ROUTES } from './decisions/index.js';
import { API_CALL_ROUTES, BUDGET_AND_AUDIT_ROUTES, EGRESS_ROUTES } from './egress/index.js';
import { HEALTH_ROUTES } from './health/index.js';
import { JOB_ADMIN_ROUTES, JOB_WORKER_ROUTES } from './jobs/index.js';
import { KEY_ROUTES } from './keys/index.js';
import { MCP_ROUTES } from './mcp/index.js';
import { METRICS_ROUTES } from './metrics/index.js';
import { MODEL_API_ROUTES } from './model-api/index.js';
import { OPENAPI_ROUTES } from './openapi/routes.js';
import { PREFERENCE_ROUTES } from './preferences/index.js';
import { REPLAY_ROUTES } from './replay/index.js';
import type { Route } from './server/route.js';
import { SETTINGS_ROUTES } from './settings/index.js';
import { CREDENTIAL_ROUTES } from './vault/index.js';
import { WORKER_ADMIN_ROUTES, WORKER_ROUTES } from './workers/index.js';

/** A route table entry as data, without its handler: what the API description and the fuzz specs read. */
export type RouteEntry = Omit<Route<never>, 'handler'>;

/**
 * Every route the gateway serves, on the roles that serve it: each feature's own table, in
 * the order the API description lists them. The gateway refuses to start if a module mounts
 * a route missing here, or leaves one of these without a handler.
 */
export const ROUTE_TABLE: readonly RouteEntry[] = [
  ...HEALTH_ROUTES,
  ...METRICS_ROUTES,
  ...OPENAPI_ROUTES,
  ...KEY_ROUTES,
  ...POLICY_ROUTES,
  ...SETTINGS_ROUTES,
  ...DECISION_ROUTES,
  ...REPLAY_ROUTES,
  ...PREFERENCE_ROUTES,
  ...CREDENTIAL_ROUTES,
  ...BUDGET_AND_AUDIT_ROUTES,
  ...WORKER_ADMIN_ROUTES,
  ...JOB_ADMIN_ROUTES,
  ...WORKER_ROUTES,
  ...JOB_WORKER_ROUTES,
  ...API_CALL_ROUTES,
  ...MCP_ROUTES,
  ...MODEL_API_ROUTES,
  ...EGRESS_ROUTES,
  ...CONSOLE_ROUTES,
];
