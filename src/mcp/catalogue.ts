import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { Ajv, type ValidateFunction } from 'ajv';
import { errorMessage } from '../lib/error-message.js';
import type { Logger } from '../logging/index.js';
import { MCP_UPSTREAM_FAILED } from './errors.js';
import type { Upstream, UpstreamClient, UpstreamTool } from './upstreams.js';

/** The `api.call` tool: the REST form's body as tool arguments. */
const API_CALL_TOOL = {
  name: 'api.call',
  description:
    'Calls an external model provider through API Egress (policy, credential injection, budget, audit). The worker never holds the key.',
  inputSchema: {
    type: 'object',
    properties: {
      provider: { type: 'string' },
      operation: { type: 'string' },
      params: { type: 'object' },
      task_id: { type: 'string' },
      job_id: { type: 'string' },
    },
    required: ['provider', 'operation', 'params', 'task_id', 'job_id'],
    additionalProperties: false,
  },
};

/** A tool name an upstream may export: it becomes `<upstream>.<name>`, a metric label and an audit field. */
const TOOL_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Past this many compiled schemas the cache starts over (upstreams that change schemas often). */
const MAX_VALIDATORS = 1000;

/** A tool as the gateway exports it: `api.call`, or an upstream's tool under `<upstream>.<name>`. */
export interface CatalogueTool {
  name: string;
  description?: string;
  inputSchema: Record<string, unknown>;
  /** Where calls go; absent for `api.call`, which API Egress serves. */
  upstream?: Upstream;
  /** The tool's own name on its upstream. */
  local: string;
}

/** Checks a tool's arguments against its input schema: undefined when they pass, else what is wrong. */
export type ArgumentValidator = (args: unknown) => string | undefined;

/** Every tool the gateway exports, before policy: what a caller may see is decided per call. */
export interface ToolCatalogue {
  /** `api.call` first, then each upstream's tools in config order. */
  list(): Promise<CatalogueTool[]>;
  /** The tool of that exported name, or undefined. */
  find(name: string): Promise<CatalogueTool | undefined>;
  /**
   * The validator of a tool's input schema, compiled once per tool and schema. A schema that
   * cannot be compiled is the upstream's fault: MCP error -32002 `upstream_error`.
   */
  validator(tool: CatalogueTool): ArgumentValidator;
}

export interface ToolCatalogueDeps {
  upstreams: readonly Upstream[];
  client: UpstreamClient;
  /** How long an upstream's tool list is reused before it is asked again. */
  discoveryTtlMs: number;
  logger: Logger;
  /** The clock the discovery TTL is measured on (tests move it). */
  now?: () => number;
}

/**
 * The tool catalogue: `api.call` plus the tools each configured upstream lists with
 * `tools/list`, cached for `discoveryTtlMs`. An upstream that cannot be asked keeps the tools
 * it last listed, or contributes none: it never widens the catalogue by failing. Each
 * upstream's exported tools are built once per listing, and callers that find a list expired
 * at the same time wait for one `tools/list`, not one each.
 */
export function createToolCatalogue(deps: ToolCatalogueDeps): ToolCatalogue {
  const now = deps.now ?? Date.now;
  const apiCall: CatalogueTool = { ...API_CALL_TOOL, local: 'api.call' };
  const discovered = new Map<string, Discovered>();
  const asking = new Map<string, Promise<Discovered>>();
  const byName = new Map(deps.upstreams.map((u) => [u.name, u]));

  const discover = async (upstream: Upstream): Promise<Discovered> => {
    const cached = discovered.get(upstream.name);
    let tools: UpstreamTool[];
    try {
      const result = (await deps.client.request(
        upstream,
        'tools/list',
        {},
        { subject: 'gateway', entrypoint: 'mcp/tools/list', input: {}, revision: '' },
      )) as {
        tools?: UpstreamTool[];
      };
      tools = (result.tools ?? []).filter(
        (t) => typeof t?.name === 'string' && TOOL_NAME.test(t.name) && t.inputSchema && typeof t.inputSchema === 'object',
      );
    } catch (err) {
      deps.logger.warn({ upstream: upstream.name, err: errorMessage(err) }, 'upstream tool discovery failed');
      return cached ?? { at: -Infinity, tools: [], byName: new Map() };
    }
    const exported = tools.map((t): CatalogueTool => ({ ...t, name: `${upstream.name}.${t.name}`, upstream, local: t.name }));
    const fresh = { at: now(), tools: exported, byName: new Map(exported.map((t) => [t.name, t])) };
    discovered.set(upstream.name, fresh);
    return fresh;
  };

  const upstreamTools = (upstream: Upstream): Discovered | Promise<Discovered> => {
    const cached = discovered.get(upstream.name);
    if (cached && now() - cached.at < deps.discoveryTtlMs) return cached;
    let pending = asking.get(upstream.name);
    if (!pending) {
      pending = discover(upstream).finally(() => asking.delete(upstream.name));
      asking.set(upstream.name, pending);
    }
    return pending;
  };

  return {
    async list() {
      const lists = await Promise.all(deps.upstreams.map(upstreamTools));
      return [apiCall, ...lists.flatMap((l) => l.tools)];
    },
    async find(name) {
      if (name === apiCall.name) return apiCall;
      // Upstream names hold no dot: the exported name's first segment is its upstream.
      const upstream = byName.get(name.slice(0, name.indexOf('.')));
      return upstream && (await upstreamTools(upstream)).byName.get(name);
    },
    validator: createValidators(),
  };
}

/** One upstream's listing: when, and its tools as the gateway exports them. */
interface Discovered {
  at: number;
  tools: CatalogueTool[];
  byName: Map<string, CatalogueTool>;
}

/** Compiles input schemas with ajv, each (tool, schema) pair once; a listed tool finds its validator without a look-up key. */
function createValidators(): (tool: CatalogueTool) => ArgumentValidator {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validators = new Map<string, ArgumentValidator>();
  const ofTool = new WeakMap<CatalogueTool, ArgumentValidator>();
  return (tool) => {
    const known = ofTool.get(tool);
    if (known) return known;
    const key = `${tool.name}:${JSON.stringify(tool.inputSchema)}`;
    let v = validators.get(key);
    if (!v) {
      let validate: ValidateFunction;
      try {
        validate = ajv.compile(tool.inputSchema);
      } catch {
        throw new McpError(MCP_UPSTREAM_FAILED, `the input schema of ${tool.name} cannot be used`, { code: 'upstream_error' });
      }
      v = (args) => (validate(args) ? undefined : ajv.errorsText(validate.errors));
      if (validators.size > MAX_VALIDATORS) validators.clear();
      validators.set(key, v);
    }
    ofTool.set(tool, v);
    return v;
  };
}
