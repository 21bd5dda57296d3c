import { ERROR_STATUS, type ErrorCode } from '../errors/codes.js';
import type { Role } from '../server/roles.js';
import { type Auth, type Operation, OPERATIONS } from './operations.js';
import { type Schema, SCHEMAS } from './schemas.js';

import type { OpenApiDocument } from './types.js';

const DEFAULT_PORTS: Record<Role, number> = { control: 12082, mcp: 12083, egress: 12084 };
const ROLE_NAMES: Record<Role, string> = {
  control: 'Control plane (worker REST, orchestrator, admin)',
  mcp: 'MCP gateway',
  egress: 'API Egress (final gate)',
};

const SECURITY: Record<Auth, Record<string, string[]>[]> = {
  public: [],
  admin: [{ adminToken: [] }],
  reader: [{ readerToken: [] }, { adminToken: [] }],
  bundleReader: [{ bundleReaderToken: [] }, { adminToken: [] }],
  psk: [{ registrationPsk: [] }],
  worker: [{ workerJwt: [] }],
  workerOrAdmin: [{ workerJwt: [] }, { adminToken: [] }],
  agent: [{ workerJwt: [] }, { agentJwt: [] }],
  modelKey: [{ agentJwt: [] }, { agentApiKey: [] }, { workerJwt: [] }],
  forward: [{ forwardToken: [] }],
  // Public unless auth.metricsToken is set (the empty requirement: no credential needed).
  metrics: [{}, { metricsToken: [] }, { adminToken: [] }],
};

const AUTH_ERRORS: Record<Auth, ErrorCode[]> = {
  public: [],
  admin: ['unauthorized', 'forbidden'],
  reader: ['unauthorized', 'forbidden'],
  bundleReader: ['unauthorized', 'forbidden'],
  psk: [],
  worker: ['unauthorized', 'token_invalid', 'token_expired', 'session_replaced'],
  workerOrAdmin: ['unauthorized', 'token_invalid', 'token_expired', 'session_replaced'],
  agent: ['unauthorized', 'token_invalid', 'token_expired', 'session_replaced'],
  modelKey: ['unauthorized', 'token_invalid', 'token_expired', 'session_replaced'],
  forward: [],
  metrics: ['unauthorized'],
};

/** Every error code an operation may answer with in the gateway's `Error` shape. */
export function impliedErrors(op: Operation): ErrorCode[] {
  // Every path refuses a declared Content-Length over the body limit, body route or not.
  const codes: ErrorCode[] = [...AUTH_ERRORS[op.access], 'payload_too_large'];
  if (op.body) codes.push('bad_request', ...(op.body.raw ? [] : (['invalid_json', 'unsupported_media_type'] as const)));
  if (op.db) codes.push('database_unavailable');
  if (op.decides) codes.push('bundle_unavailable', 'policy_evaluation_failed', 'decision_log_unavailable');
  codes.push('internal');
  return codes;
}

const schemaRef = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });

function errorResponses(op: Operation): Record<string, unknown> {
  const own = op.refusal ? op.errors : [];
  const shared = [...impliedErrors(op), ...(op.refusal ? [] : op.errors)];
  const byStatus = new Map<number, { codes: Set<ErrorCode>; schemas: Set<string> }>();
  const add = (code: ErrorCode, schema: string) => {
    const status = ERROR_STATUS[code];
    const entry = byStatus.get(status) ?? { codes: new Set(), schemas: new Set() };
    entry.codes.add(code);
    entry.schemas.add(schema);
    byStatus.set(status, entry);
  };
  for (const code of shared) add(code, 'Error');
  for (const code of own) add(code, op.refusal!);
  const out: Record<string, unknown> = {};
  for (const [status, { codes, schemas }] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    const list = [...codes].sort();
    const refs = [...schemas].sort().map(schemaRef);
    out[String(status)] = {
      description: `Refused: ${list.map((c) => `\`${c}\``).join(', ')}.`,
      'x-error-codes': list,
      content: { 'application/json': { schema: refs.length === 1 ? refs[0] : { oneOf: refs } } },
    };
  }
  return out;
}

function operationObject(op: Operation, method: string): Record<string, unknown> {
  const pathParams = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => ({
    in: 'path',
    name: m[1],
    required: true,
    schema: { type: 'string' },
    ...(m[1] === 'path' && { description: 'An entrypoint path; may contain slashes (e.g. cynode/register/decision).' }),
  }));
  const parameters = [
    ...pathParams,
    ...(op.params ?? []).map((p) => ({
      in: p.in,
      name: p.name,
      required: p.required ?? false,
      schema: p.schema,
      description: p.description,
    })),
  ];
  const responses: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(op.ok)) {
    responses[status] = {
      description: r.description,
      ...(r.schema && { content: { 'application/json': { schema: schemaRef(r.schema) } } }),
      ...(r.mediaType && {
        content: {
          [r.mediaType]: {
            schema: { type: 'string', ...(r.mediaType === 'application/gzip' && { contentMediaType: 'application/gzip' }) },
          },
        },
      }),
    };
  }
  Object.assign(responses, errorResponses(op));
  return {
    operationId: `${method}${op.path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
    summary: op.summary,
    tags: [...op.roles],
    security: SECURITY[op.access],
    ...(parameters.length > 0 && { parameters }),
    ...(op.body && {
      requestBody: {
        required: !op.body.optional,
        content: { [op.body.mediaType ?? 'application/json']: { schema: schemaRef(op.body.schema) } },
      },
    }),
    responses,
  };
}

const serverOf = (role: Role) => ({
  url: `http://{host}:${DEFAULT_PORTS[role]}`,
  description: ROLE_NAMES[role],
  variables: { host: { default: '127.0.0.1', description: "The gateway host; the port is the role's default (CYNODE_*_PORT)." } },
});

/**
 * Builds the OpenAPI 3.1 document from the route table: one path item per path, with the
 * servers (roles and ports) that serve it, every operation's auth, body, success and refusals
 * (grouped by status, each listing its stable codes).
 */
export function buildOpenApiDocument(version: string, operations: readonly Operation[] = OPERATIONS): OpenApiDocument {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of operations) {
    const item = (paths[op.path] ??= { servers: op.roles.map(serverOf), 'x-cynode-roles': [...op.roles] });
    for (const method of op.method === 'all' ? (op.documentedMethods ?? []) : [op.method]) item[method] = operationObject(op, method);
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'cynode-gateway',
      version,
      summary: 'Policy-as-code gateway: cloud agents join CyNodeAI as workers; every decision made by OPA policy.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    jsonSchemaDialect: 'https://spec.openapis.org/oas/3.1/dialect/base',
    servers: [serverOf('control')],
    tags: (Object.keys(ROLE_NAMES) as Role[]).map((name) => ({ name, description: ROLE_NAMES[name] })),
    paths,
    components: {
      schemas: SCHEMAS,
      securitySchemes: {
        adminToken: { type: 'http', scheme: 'bearer', description: 'The admin/orchestrator token (CYNODE_ADMIN_TOKEN).' },
        readerToken: { type: 'http', scheme: 'bearer', description: 'The read-only token (CYNODE_READER_TOKEN): reads, never changes.' },
        metricsToken: { type: 'http', scheme: 'bearer', description: 'The metrics token (CYNODE_METRICS_TOKEN), when one is set.' },
        bundleReaderToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'The read-only bundle service token (CYNODE_BUNDLE_SERVICE_TOKEN).',
        },
        registrationPsk: {
          type: 'apiKey',
          in: 'header',
          name: 'X-Cynode-PSK',
          description: 'A registration PSK (POST /v1/psks); never logged.',
        },
        workerJwt: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'The worker JWT from POST /register (ES256, typ cynode-worker+jwt).',
        },
        agentJwt: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An agent token from POST /v1/agent-tokens.' },
        agentApiKey: {
          type: 'apiKey',
          in: 'header',
          name: 'x-api-key',
          description: 'An agent token sent as Anthropic SDKs send their key (the drop-in model APIs).',
        },
        forwardToken: {
          type: 'apiKey',
          in: 'header',
          name: 'X-Cynode-Forward-Token',
          description: "The gateway's forward token (ES256 JWT bound to the body), for API Egress only.",
        },
      },
    },
  };
}
