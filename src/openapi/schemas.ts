import { ERROR_STATUS } from '../errors/codes.js';
import { JOB_STATES } from '../jobs/types.js';

/** A JSON Schema (2020-12, the dialect of OpenAPI 3.1), as plain data. */
export type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const str = (description?: string): Schema => ({ type: 'string', ...(description && { description }) });
const strings: Schema = { type: 'array', items: { type: 'string' } };
const uuid: Schema = { type: 'string', format: 'uuid' };
const time: Schema = { type: 'string', format: 'date-time' };
const name: Schema = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' };
const names = (max: number): Schema => ({ type: 'array', maxItems: max, items: name });
const object = (properties: Record<string, Schema>, required: string[] = [], closed = false): Schema => ({
  type: 'object',
  properties,
  ...(required.length > 0 && { required }),
  ...(closed && { additionalProperties: false }),
});

/**
 * The component schemas of the document. Request bodies say what the routes accept (closed
 * objects where the route refuses unknown fields); answers are described loosely, by their
 * main fields, so the document stays true as answers grow.
 */
export const SCHEMAS: Record<string, Schema> = {
  Error: object(
    {
      error: object(
        {
          code: {
            type: 'string',
            enum: Object.keys(ERROR_STATUS),
            description: 'A stable code (src/errors/codes.ts); clients match on it, never on the message.',
          },
          message: str('Human-readable; may change.'),
          details: {
            type: 'object',
            description: 'Code-specific detail, e.g. `reasons`, `retry_after_s`, `remaining_usd`, or the fields of a 422.',
          },
        },
        ['code', 'message'],
      ),
    },
    ['error'],
  ),
  CapabilityReport: object(
    {
      node_id: { ...name, description: "The worker's stable id." },
      labels: names(64),
      region: name,
      provider: { ...name, description: 'The cloud the worker runs in.' },
      inference_mode: { type: 'string', enum: ['provider_api', 'ollama_remote', 'ollama_local'] },
      supported_providers: names(32),
      supported_models: { type: 'array', maxItems: 256, items: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$' } },
      max_concurrency: { type: 'integer', minimum: 1, maximum: 1024, default: 1 },
      rate_limits: object(
        { rpm: { type: 'integer', minimum: 1, maximum: 1e9 }, tpm: { type: 'integer', minimum: 1, maximum: 1e9 } },
        [],
        true,
      ),
      reachable_endpoints: { type: 'array', maxItems: 64, items: { type: 'string', format: 'uri', maxLength: 512 } },
    },
    ['node_id', 'labels', 'inference_mode'],
    true,
  ),
  Registration: object({ token: str('The worker JWT.'), token_type: str(), expires_at: time, node_id: str() }),
  LeaseRef: object({ job_id: uuid, lease_id: uuid }, ['job_id', 'lease_id']),
  StatusReport: object(
    {
      health: { type: 'object' },
      load: { type: 'object' },
      jobs: { type: 'array', items: ref('LeaseRef'), maxItems: 1024 },
      capabilities: {
        type: ['object', 'null'],
        description: 'A CapabilityReport, validated field by field as at registration (422 capability_invalid).',
      },
    },
    [],
    true,
  ),
  StatusAnswer: object({
    cancelled: { type: 'array', items: ref('LeaseRef') },
    lost: { type: 'array', items: { type: 'object' } },
    poll_interval_ms: { type: 'integer' },
    heartbeat_interval_ms: { type: 'integer' },
    lease_ttl_ms: { type: 'integer' },
  }),
  PollRequest: object(
    { max_jobs: { type: 'integer', minimum: 1, maximum: 1024 }, wait_ms: { type: 'integer', minimum: 0, maximum: 30000 } },
    [],
    true,
  ),
  LeasedJobs: object({ jobs: { type: 'array', items: { type: 'object' } } }, ['jobs']),
  ResultReport: object(
    {
      job_id: uuid,
      lease_id: uuid,
      status: { type: 'string', enum: ['succeeded', 'failed'] },
      result: {},
      error: object(
        { code: { type: 'string', maxLength: 128 }, message: { type: 'string', maxLength: 4096 }, retryable: { type: 'boolean' } },
        ['code', 'message', 'retryable'],
      ),
    },
    ['job_id', 'lease_id', 'status'],
    true,
  ),
  JobSpec: object(
    {
      task_id: str(),
      user_id: str(),
      project_id: str(),
      group_id: str(),
      requirements: { type: 'object', description: 'providers, models, regions, labels, ...' },
      preferences: { type: 'object' },
      budget_usd: { type: 'number', minimum: 0 },
      estimated_cost_usd: { type: 'number', minimum: 0 },
      payload: { type: 'object' },
      priority: { type: 'integer' },
      max_attempts: { type: 'integer', minimum: 1 },
      timeout_ms: { type: 'integer', minimum: 1 },
      preferred_node_id: str(),
    },
    ['task_id', 'user_id', 'payload'],
    true,
  ),
  Job: object({ id: uuid, task_id: str(), state: { type: 'string', enum: [...JOB_STATES] } }),
  ApiCall: object(
    {
      provider: str('openai, anthropic'),
      operation: str('chat.completions, embeddings, messages'),
      task_id: str(),
      job_id: { type: ['string', 'null'], format: 'uuid' },
      params: { type: 'object' },
    },
    ['provider', 'operation', 'task_id', 'params'],
    true,
  ),
  ApiCallAnswer: object(
    {
      request_id: uuid,
      status: { type: 'string', enum: ['ok', 'denied', 'error'] },
      result: {},
      error: { type: ['object', 'null'] },
      usage: { type: ['object', 'null'] },
      cost_usd: { type: 'number' },
      model: { type: ['string', 'null'] },
      price_version: { type: ['string', 'null'] },
      decision_id: { type: ['string', 'null'] },
    },
    ['request_id', 'status'],
  ),
  Value: object({ value: { description: 'Any JSON value the key accepts.' } }, ['value']),
  Budget: object(
    {
      limit_usd: { type: 'number', minimum: 0, maximum: 1_000_000_000 },
      soft_limit_usd: { type: ['number', 'null'], minimum: 0, maximum: 1_000_000_000 },
      period: { type: 'string', enum: ['day', 'week', 'month', 'total'] },
      reset: { type: 'string', enum: ['calendar', 'rolling'] },
      model: { type: ['string', 'null'], pattern: '^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$' },
    },
    ['limit_usd'],
    true,
  ),
  BudgetAnswer: object({
    scope: { type: 'string', enum: ['task', 'user', 'group', 'project', 'subject'] },
    id: str(),
    model: { type: ['string', 'null'], description: 'The model the budget is for; null: every model.' },
    limit_usd: { type: 'number' },
    soft_limit_usd: { type: ['number', 'null'] },
    period: { type: 'string', enum: ['day', 'week', 'month', 'total'] },
    reset: { type: 'string', enum: ['calendar', 'rolling'] },
    spent_usd: { type: 'number', description: 'What the current period has spent.' },
    reserved_usd: { type: 'number', description: 'What calls in flight, reserved in the current period, hold.' },
    remaining_usd: { type: 'number' },
    period_start: { type: ['string', 'null'], format: 'date-time', description: 'null for a total budget.' },
    resets_at: { type: ['string', 'null'], format: 'date-time', description: 'When the current period ends; null for a total budget.' },
  }),
  BudgetList: object({ budgets: { type: 'array', items: ref('BudgetAnswer') } }, ['budgets']),
  NewPsk: object(
    {
      name: { type: 'string', pattern: '^[\\w .:@-]{1,128}$' },
      expires_at: { type: ['string', 'null'], format: 'date-time' },
      constraints: {
        type: ['object', 'null'],
        description:
          'What the PSK may register: `node_id_pattern` (a glob, or a regex anchored with ^…$), `allowed_labels`, `regions`; enforced by the register policy.',
      },
    },
    ['name'],
    true,
  ),
  Quarantine: object({ reason: str('Why the node is quarantined (audited).') }, ['reason']),
  NewCredential: object(
    {
      provider: str(),
      name: str(),
      secret: { type: 'string', minLength: 8, maxLength: 4096, writeOnly: true },
      owner_user: { type: ['string', 'null'] },
      owner_group: { type: ['string', 'null'] },
      expires_at: { type: ['string', 'null'], format: 'date-time' },
    },
    ['provider', 'name', 'secret'],
    true,
  ),
  CredentialSecret: object({ secret: { type: 'string', minLength: 8, maxLength: 4096, writeOnly: true } }, ['secret'], true),
  AgentTokenRequest: object(
    { agent_type: { type: 'string', enum: ['sandbox', 'pm', 'pa'] }, job_id: uuid },
    ['agent_type', 'job_id'],
    true,
  ),
  DataRequest: object({ input: { description: 'The policy input: {action, subject, resource, context}.' } }, ['input']),
  DataAnswer: object({ result: object({ allow: { type: 'boolean' }, reasons: strings }), decision_id: uuid }),
  JsonRpc: object({ jsonrpc: { const: '2.0' }, id: { type: ['string', 'integer', 'null'] }, method: str() }, ['jsonrpc']),
  Jwks: object({ keys: { type: 'array', items: { type: 'object' } } }, ['keys']),
  Health: object({ status: { const: 'ok' }, role: { type: 'string', enum: ['control', 'mcp', 'egress'] } }, ['status', 'role']),
  Ready: object(
    {
      status: { type: 'string', enum: ['ready', 'not_ready'] },
      role: str(),
      database: { type: 'object' },
      bundle: { type: 'object', description: 'The active bundle (revision, digest, activated_at) and the last load error.' },
      error: { type: 'object', description: 'When not ready: {code, message} with code database_unavailable or bundle_unavailable.' },
    },
    ['status', 'role'],
  ),
  BundleArchive: { type: 'string', contentMediaType: 'application/gzip', description: 'An OPA bundle archive (`opa build -t wasm`).' },
  ReplayReport: object(
    {
      candidate: object({ revision: str(), digest: str() }),
      since: time,
      total: { type: 'integer', description: 'Recorded decisions read.' },
      entrypoints: {
        type: 'object',
        description:
          'Per entrypoint: evaluated, unchanged, allow_to_deny, deny_to_allow, reasons_changed, masked (not compared), errors, ' +
          'and samples [{decision_id, before: {allow, reasons}, after: {allow, reasons}}].',
        additionalProperties: { type: 'object' },
      },
    },
    ['candidate', 'since', 'total', 'entrypoints'],
  ),
  ConsoleSignIn: object({ token: { type: 'string', minLength: 1, maxLength: 4096, writeOnly: true } }, ['token'], true),
  ConsoleSession: object(
    {
      principal: object({ kind: { type: 'string', enum: ['admin', 'reader'] }, id: str() }),
      csrf: { type: 'string', description: 'Send it as X-Cynode-CSRF on every write.' },
      expires_at: { type: 'string', format: 'date-time' },
    },
    ['principal', 'csrf', 'expires_at'],
  ),
  Any: { type: 'object' },
};
