import type { ErrorCode } from '../errors/codes.js';
import { JOB_STATES } from '../jobs/types.js';
import { ROLES, type Role } from '../server/roles.js';

/** How an operation authenticates; each maps to security schemes in the document. */
export type Auth = 'none' | 'admin' | 'bundleReader' | 'psk' | 'worker' | 'apiCaller' | 'mcp' | 'forward';

/** A query parameter or request header an operation reads. */
export interface Param {
  in: 'query' | 'header';
  name: string;
  schema: Record<string, unknown>;
  description: string;
  required?: boolean;
}

/** One documented route: the route table the OpenAPI document is built from. */
export interface Operation {
  method: 'get' | 'put' | 'post' | 'delete' | 'patch' | 'trace';
  /** OpenAPI form (`{id}`); `/v1/data/{path}` spans slashes. */
  path: string;
  roles: readonly Role[];
  summary: string;
  auth: Auth;
  /** Component schema of the JSON request body. */
  body?: string;
  /** The body may be left out. */
  bodyOptional?: boolean;
  params?: Param[];
  /** Success answers: status → component schema name, or a media type for non-JSON answers. */
  ok: Record<number, { description: string; schema?: string; mediaType?: string }>;
  /** Refusals this operation answers with besides those its auth, body and database imply. */
  errors: ErrorCode[];
  /** Reads or writes PostgreSQL (so it may fail closed with database_unavailable). */
  db?: boolean;
  /** Makes a policy decision (so it may fail closed on the bundle or the decision log). */
  decides?: boolean;
  /** Reads the body as bytes (no media type check). */
  rawBody?: boolean;
  /** The schema of this operation's own refusals (`errors`) when it is not `Error`. */
  refusal?: string;
}

const ALL = ROLES;
const CONTROL: readonly Role[] = ['control'];
const limit = (max: number): Param => ({ in: 'query', name: 'limit', schema: { type: 'integer', minimum: 1, maximum: max }, description: `At most this many (1-${max}, default 100).` });
const adminRead = (path: string, summary: string, schema: string, errors: ErrorCode[] = [], params?: Param[]): Operation => ({
  method: 'get', path, roles: CONTROL, summary, auth: 'admin', ok: { 200: { description: 'OK', schema } }, errors, db: true, ...(params && { params }),
});
// `/mcp` is registered for every method; these are the ones OpenAPI 3.1 can name (HEAD and
// OPTIONS follow GET and the router), and every other one gets the same 405.
const MCP_METHODS = ['get', 'put', 'patch', 'delete', 'trace'] as const;

/** Every route the gateway serves, on the roles that serve it. A test holds this against the real routers. */
export const OPERATIONS: readonly Operation[] = [
  // Ops, on every role.
  { method: 'get', path: '/healthz', roles: ALL, summary: 'Liveness: the process answers.', auth: 'none', ok: { 200: { description: 'Alive', schema: 'Health' } }, errors: [] },
  { method: 'get', path: '/readyz', roles: ALL, summary: 'Readiness: database reachable and a verified bundle active.', auth: 'none', ok: { 200: { description: 'Ready', schema: 'Ready' } }, errors: ['database_unavailable', 'bundle_unavailable'], refusal: 'Ready' },
  { method: 'get', path: '/metrics', roles: ALL, summary: 'Prometheus metrics (text exposition format).', auth: 'none', ok: { 200: { description: 'Metrics', mediaType: 'text/plain' } }, errors: [] },
  { method: 'get', path: '/openapi.json', roles: ALL, summary: 'This document.', auth: 'none', ok: { 200: { description: 'OpenAPI 3.1', schema: 'Any' } }, errors: [] },

  // Keys and bundles for workers and target services.
  { method: 'get', path: '/.well-known/jwks.json', roles: CONTROL, summary: 'Public keys that verify gateway-issued JWTs.', auth: 'none', ok: { 200: { description: 'JWKS', schema: 'Jwks' } }, errors: [], db: true },
  {
    method: 'get', path: '/v1/bundles/{name}', roles: CONTROL, summary: 'OPA Bundle Service API: the bundle this gateway runs (ETag, long polling).', auth: 'bundleReader',
    params: [
      { in: 'header', name: 'If-None-Match', schema: { type: 'string' }, description: 'The ETag held; 304 when unchanged.' },
      { in: 'header', name: 'Prefer', schema: { type: 'string' }, description: '`modes=long-polling;wait=<s>` holds the request until a new bundle or the wait ends.' },
    ],
    ok: { 200: { description: 'The signed bundle archive', mediaType: 'application/gzip' }, 304: { description: 'Not modified' } },
    errors: ['not_found', 'bundle_unavailable'],
  },

  // Admin and orchestrator (admin token).
  adminRead('/v1/status', 'Active bundle revision, last load error, decision log and database.', 'Any'),
  adminRead('/v1/settings/{key}', 'A runtime setting (e.g. cloud_routing.enabled, the kill switch).', 'Any', ['setting_unknown']),
  { method: 'put', path: '/v1/settings/{key}', roles: CONTROL, summary: 'Sets a runtime setting; every replica applies it within a second.', auth: 'admin', body: 'Value', ok: { 200: { description: 'Stored', schema: 'Any' } }, errors: ['setting_unknown', 'setting_invalid'], db: true },
  { method: 'post', path: '/v1/data/{path}', roles: CONTROL, summary: 'OPA-compatible decision on a bundle entrypoint (path spans slashes, e.g. cynode/register/decision).', auth: 'admin', body: 'DataRequest', ok: { 200: { description: 'The decision', schema: 'DataAnswer' } }, errors: ['entrypoint_unknown'], db: true, decides: true },
  adminRead('/v1/decisions/{id}', 'One logged decision in OPA\'s decision-log shape.', 'Any', ['not_found']),
  adminRead('/v1/preferences/{scope}/{id}/{key}', 'A user preference (scope: system, group, user, project, task).', 'Any', ['preference_unknown', 'preference_invalid']),
  { method: 'put', path: '/v1/preferences/{scope}/{id}/{key}', roles: CONTROL, summary: 'Sets a preference.', auth: 'admin', body: 'Value', ok: { 200: { description: 'Stored', schema: 'Any' } }, errors: ['preference_unknown', 'preference_invalid'], db: true },
  { method: 'delete', path: '/v1/preferences/{scope}/{id}/{key}', roles: CONTROL, summary: 'Removes a preference.', auth: 'admin', ok: { 204: { description: 'Removed' } }, errors: ['preference_unknown', 'preference_invalid'], db: true },
  { method: 'post', path: '/v1/keys/rotate', roles: CONTROL, summary: 'This replica starts signing JWTs with a new key.', auth: 'admin', ok: { 200: { description: 'Rotated', schema: 'Any' } }, errors: [], db: true },
  { method: 'post', path: '/v1/credentials', roles: CONTROL, summary: 'Stores a provider credential (envelope-encrypted; never returned).', auth: 'admin', body: 'NewCredential', ok: { 201: { description: 'Metadata', schema: 'Any' } }, errors: ['credential_invalid', 'credential_exists', 'vault_unavailable'], db: true },
  adminRead('/v1/credentials', 'Credential metadata.', 'Any'),
  adminRead('/v1/credentials/{id}', 'One credential\'s metadata.', 'Any', ['credential_not_found']),
  { method: 'post', path: '/v1/credentials/{id}/rotate', roles: CONTROL, summary: 'Replaces a credential\'s secret.', auth: 'admin', body: 'CredentialSecret', ok: { 200: { description: 'Metadata', schema: 'Any' } }, errors: ['credential_not_found', 'credential_invalid', 'vault_unavailable'], db: true },
  { method: 'post', path: '/v1/credentials/{id}/disable', roles: CONTROL, summary: 'Disables a credential.', auth: 'admin', ok: { 200: { description: 'Metadata', schema: 'Any' } }, errors: ['credential_not_found'], db: true },
  { method: 'put', path: '/v1/budgets/{scope}/{id}', roles: CONTROL, summary: 'Sets a budget (scope: task, user, subject).', auth: 'admin', body: 'Budget', ok: { 200: { description: 'The budget', schema: 'Any' } }, errors: ['budget_invalid'], db: true },
  adminRead('/v1/budgets/{scope}/{id}', 'A budget: limit, spent, reserved, remaining.', 'Any', ['budget_invalid', 'budget_not_found']),
  adminRead('/v1/budgets', 'Every budget, optionally of one scope.', 'Any', ['budget_invalid'], [{ in: 'query', name: 'scope', schema: { type: 'string', enum: ['task', 'user', 'subject'] }, description: 'Only this scope.' }]),
  adminRead('/v1/audit', 'The api.call audit trail (hash-chained).', 'Any', [], [
    { in: 'query', name: 'task_id', schema: { type: 'string' }, description: 'Only this task.' },
    { in: 'query', name: 'request_id', schema: { type: 'string', format: 'uuid' }, description: 'Only this request.' },
    { in: 'query', name: 'after', schema: { type: 'string', pattern: '^\\d{1,18}$' }, description: 'Records after this sequence number.' },
    limit(1000),
  ]),
  adminRead('/v1/workers', 'Registered workers with their capability reports.', 'Any'),
  { method: 'post', path: '/v1/psks', roles: CONTROL, summary: 'Creates a registration PSK (the secret is shown once).', auth: 'admin', body: 'NewPsk', ok: { 201: { description: 'The PSK with its secret', schema: 'Any' } }, errors: [], db: true },
  adminRead('/v1/psks', 'PSK metadata.', 'Any'),
  { method: 'delete', path: '/v1/psks/{id}', roles: CONTROL, summary: 'Revokes a PSK.', auth: 'admin', ok: { 200: { description: 'Revoked', schema: 'Any' } }, errors: ['psk_not_found'], db: true },
  {
    method: 'post', path: '/v1/jobs', roles: CONTROL, summary: 'Submits a job (idempotent per Idempotency-Key).', auth: 'admin', body: 'JobSpec',
    params: [{ in: 'header', name: 'Idempotency-Key', schema: { type: 'string' }, description: 'Required; a repeat returns the first answer with Idempotent-Replayed: true.', required: true }],
    ok: { 201: { description: 'Queued; a repeat of the same key answers the first answer again, with Idempotent-Replayed: true', schema: 'Job' } },
    errors: ['job_invalid', 'idempotency_key_required', 'idempotency_in_flight', 'idempotency_key_reused'], db: true,
  },
  adminRead('/v1/jobs', 'Jobs, newest first.', 'Any', [], [{ in: 'query', name: 'state', schema: { type: 'string', enum: [...JOB_STATES] }, description: 'Only this state.' }, limit(1000)]),
  adminRead('/v1/jobs/{id}', 'A job, its attempts, and why it waits (last dispatch decision per node).', 'Job', ['job_not_found']),
  { method: 'post', path: '/v1/jobs/{id}/cancel', roles: CONTROL, summary: 'Cancels a job.', auth: 'admin', ok: { 200: { description: 'Cancelled', schema: 'Job' } }, errors: ['job_not_found', 'job_finished'], db: true },

  // The Worker API (seed paths).
  { method: 'post', path: '/register', roles: CONTROL, summary: 'Registers a worker with a PSK and its capability report; answers a worker JWT.', auth: 'psk', body: 'CapabilityReport', ok: { 200: { description: 'Registered', schema: 'Registration' } }, errors: ['psk_invalid', 'rate_limited', 'capability_invalid', 'node_id_taken', 'policy_denied'], db: true, decides: true },
  { method: 'post', path: '/status', roles: CONTROL, summary: 'Heartbeat: health and load; extends leases, names cancelled and lost jobs.', auth: 'worker', body: 'StatusReport', ok: { 200: { description: 'Lease status', schema: 'StatusAnswer' } }, errors: ['capability_invalid'], db: true },
  {
    method: 'get', path: '/jobs', roles: CONTROL, summary: 'Leases up to max_jobs jobs, optionally long-polling.', auth: 'worker',
    params: [
      { in: 'query', name: 'max_jobs', schema: { type: 'integer', minimum: 1, maximum: 1024 }, description: 'At most this many jobs.' },
      { in: 'query', name: 'wait_ms', schema: { type: 'integer', minimum: 0, maximum: 30000 }, description: 'Long poll: wait this long for work.' },
    ],
    ok: { 200: { description: 'Leased jobs', schema: 'LeasedJobs' } }, errors: [], db: true, decides: true,
  },
  { method: 'post', path: '/jobs/poll', roles: CONTROL, summary: 'Leases jobs (the POST form of GET /jobs).', auth: 'worker', body: 'PollRequest', bodyOptional: true, ok: { 200: { description: 'Leased jobs', schema: 'LeasedJobs' } }, errors: [], db: true, decides: true },
  { method: 'post', path: '/result', roles: CONTROL, summary: 'Reports a job\'s result: idempotent, fenced by the lease.', auth: 'worker', body: 'ResultReport', ok: { 200: { description: 'Accepted (or the same answer again)', schema: 'Any' } }, errors: ['job_not_found', 'job_not_owned', 'job_finished', 'lease_superseded', 'result_conflict'], db: true },
  { method: 'post', path: '/v1/agent-tokens', roles: CONTROL, summary: 'An agent token for a job the worker leases (MCP bearer for its agents).', auth: 'worker', body: 'AgentTokenRequest', ok: { 201: { description: 'The token', schema: 'Any' } }, errors: ['job_not_leased'], db: true },

  // Tools.
  {
    method: 'post', path: '/v1/api/call', roles: CONTROL, summary: 'The api.call tool (REST): worker JWT for a leased job, or the orchestrator token (direct routing).', auth: 'apiCaller', body: 'ApiCall',
    ok: { 200: { description: 'The provider\'s answer with usage and cost', schema: 'ApiCallAnswer' } },
    errors: [
      'job_not_leased', 'job_not_found', 'policy_denied', 'budget_exceeded', 'budget_missing', 'rate_limited', 'credential_missing', 'credential_disabled', 'credential_expired',
      'provider_error', 'provider_auth_failed', 'provider_bad_request', 'provider_rate_limited', 'provider_timeout', 'provider_stream_interrupted', 'provider_unreachable', 'egress_unavailable', 'audit_unavailable',
    ],
    refusal: 'ApiCallAnswer', db: true, decides: true,
  },
  { method: 'post', path: '/mcp', roles: ['mcp'], summary: 'MCP over Streamable HTTP (stateless, JSON answers): tools/list and tools/call, each gated by mcp.tool.invoke.', auth: 'mcp', body: 'JsonRpc', ok: { 200: { description: 'A JSON-RPC answer', schema: 'JsonRpc' }, 202: { description: 'A notification, accepted' } }, errors: ['bad_request'], refusal: 'JsonRpc', rawBody: true, db: true, decides: true },
  ...MCP_METHODS.map((method): Operation => ({ method, path: '/mcp', roles: ['mcp'], summary: 'Not supported: the endpoint is stateless, POST only (405 with a JSON-RPC error).', auth: 'none', ok: {}, errors: ['method_not_allowed'], refusal: 'JsonRpc' })),
  {
    method: 'post', path: '/v1/egress/call', roles: ['egress'], summary: 'API Egress, the final gate: a call the control plane forwarded under a forward token bound to the body.', auth: 'forward', body: 'Any',
    ok: { 200: { description: 'The provider\'s answer', schema: 'ApiCallAnswer' } },
    errors: ['forward_token_invalid', 'forward_token_replayed', 'forward_body_mismatch', 'policy_denied', 'budget_exceeded', 'budget_missing', 'rate_limited', 'credential_missing', 'credential_disabled', 'credential_expired', 'provider_error', 'provider_timeout', 'provider_unreachable', 'audit_unavailable'],
    refusal: 'ApiCallAnswer', rawBody: true, db: true, decides: true,
  },
];
