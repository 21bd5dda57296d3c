import type { Context } from 'koa';
import type { ErrorCode } from '../errors/index.js';
import type { Role } from './roles.js';

/**
 * Who may call a route. Each kind but `public` has one authenticator, supplied by the feature
 * that owns the credential; the role app attaches it from the route's entry, so no route can
 * be served without the check its entry names.
 * - `public`: anyone (health, the API description, the JWKS).
 * - `psk`: a registration PSK; checked by registration itself, in turn per source address.
 * - `worker`: a worker JWT for a live session.
 * - `agent`: a worker JWT or an agent token (the MCP gateway).
 * - `modelKey`: the key a provider SDK sends (`Authorization: Bearer` or `x-api-key`): an agent
 *   token or a worker JWT (the job it calls for, and its lease, are checked with the request).
 * - `workerOrAdmin`: a worker JWT for a leased job, or the admin token (direct routing).
 * - `admin`: the admin/orchestrator token.
 * - `reader`: the read-only token, or the admin token (reads that change nothing).
 * - `bundleReader`: the read-only bundle service token, or the admin token.
 * - `forward`: a forward token bound to the request body; checked with the body by the final gate.
 * - `metrics`: anyone while no metrics token is configured (as Prometheus scrapers expect);
 *   otherwise the metrics token or the admin token.
 */
export const ACCESS_KINDS = [
  'public',
  'psk',
  'worker',
  'agent',
  'modelKey',
  'workerOrAdmin',
  'admin',
  'reader',
  'bundleReader',
  'forward',
  'metrics',
] as const;
export type Access = (typeof ACCESS_KINDS)[number];

/** HTTP methods a route table entry can name; `all` answers every method (used for 405s). */
export type Method = 'get' | 'put' | 'post' | 'delete' | 'all';

/** The operations an OpenAPI 3.1 path item can name (HEAD and OPTIONS follow GET and the router). */
export type DocumentedMethod = 'get' | 'put' | 'post' | 'delete' | 'patch' | 'trace';

/** A query parameter or request header an operation reads. */
export interface Param {
  in: 'query' | 'header';
  name: string;
  schema: Record<string, unknown>;
  description: string;
  required?: boolean;
}

/** The JSON request body of a route: validated by the role app before the handler runs. */
export interface BodySpec {
  /** Component schema name (see `src/openapi/schemas.ts`); the validator is compiled from it. */
  schema: string;
  /** The body may be left out (no Content-Length and no Transfer-Encoding). */
  optional?: boolean;
  /** The handler reads the bytes itself (a body-bound token covers them): no parsing, no media type check. */
  raw?: boolean;
  /** The media type the API description names for the body (default `application/json`). */
  mediaType?: string;
  /** The code a body that fails the schema is refused with (default `bad_request`). */
  invalid?: ErrorCode;
  /**
   * The feature's own parser, for bodies refused field by field (`details.errors`): it runs
   * instead of the schema validator, and the schema documents what it accepts.
   */
  parse?: (raw: unknown) => unknown;
  /**
   * Why the handler checks the parsed body itself instead of the schema validator (e.g. a
   * refused `api.call` is an audited api.call answer, not a bare error). The body is still
   * read and parsed as JSON; only the schema check is the handler's.
   */
  handlerChecks?: string;
}

/** A refusal as the error middleware answers it, before it is put in a body. */
export interface Refusal {
  status: number;
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** Puts a route's refusals in the error shape of the API the route stands in for (the drop-in model APIs). */
export type ErrorShape = (refusal: Refusal) => { status: number; body: unknown };

/** What a handler may read from `ctx.state`, written by the stages before it. */
export interface RouteState {
  /** The role whose app serves the request. */
  role: Role;
  /** The parsed, validated JSON body (for routes with a non-raw `body`). */
  body?: unknown;
  [key: string]: unknown;
}

/** The Koa context a route handler receives. */
export type RouteContext = Context & { params: Record<string, string>; state: RouteState };

/**
 * One route as data: method, path, the roles that serve it, who may call it, its request
 * schema and its handler, plus what the API description says of it. Features export their
 * routes as a table of these; authentication, validation, `/openapi.json` and the fuzz specs
 * all derive from the tables.
 */
export interface Route<D = never> {
  method: Method;
  /** OpenAPI form (`/v1/jobs/{id}`); a trailing `{path}` spans slashes. */
  path: string;
  roles: readonly Role[];
  access: Access;
  summary: string;
  body?: BodySpec;
  params?: Param[];
  /** Success answers: status → component schema name, or a media type for non-JSON answers. */
  ok: Record<number, { description: string; schema?: string; mediaType?: string }>;
  /** Refusals this route answers with besides those its access, body and database imply. */
  errors: ErrorCode[];
  /** Reads or writes PostgreSQL (so it may fail closed with database_unavailable). */
  db?: boolean;
  /** Makes a policy decision (so it may fail closed on the bundle or the decision log). */
  decides?: boolean;
  /** The schema of this route's own refusals (`errors`) when it is not `Error`. */
  refusal?: string;
  /** Refusals of this route (its authentication's included) in another API's error shape; absent: the gateway's own. */
  errorShape?: ErrorShape;
  /** For `all` routes: the methods the API description names. */
  documentedMethods?: readonly DocumentedMethod[];
  handler(ctx: RouteContext, deps: D): unknown;
}

/** A route whose handler has its dependencies: what a role app mounts. */
export interface BoundRoute extends Omit<Route, 'handler'> {
  handle(ctx: RouteContext): unknown;
}

/** Gives a feature's route table its dependencies. */
export function bindRoutes<D>(routes: readonly Route<D>[], deps: D): BoundRoute[] {
  return routes.map(({ handler, ...route }) => ({ ...route, handle: (ctx: RouteContext) => handler(ctx, deps) }));
}

/** Declares a feature's route table with its dependency type checked once for every entry. */
export function defineRoutes<D>(routes: Route<D>[]): readonly Route<D>[] {
  return routes;
}
