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
 * it last listed, or contributes none: it never widens the catalogue by failing.
 */
export function createToolCatalogue(deps: ToolCatalogueDeps): ToolCatalogue {
  const now = deps.now ?? Date.now;
  const discovered = new Map<string, { at: number; tools: UpstreamTool[] }>();

  const upstreamTools = async (upstream: Upstream): Promise<UpstreamTool[]> => {
    const cached = discovered.get(upstream.name);
    if (cached && now() - cached.at < deps.discoveryTtlMs) return cached.tools;
    try {
      const result = (await deps.client.request(
        upstream,
        'tools/list',
        {},
        { subject: 'gateway', entrypoint: 'mcp/tools/list', input: {}, revision: '' },
      )) as {
        tools?: UpstreamTool[];
      };
      const tools = (result.tools ?? []).filter(
        (t) => typeof t?.name === 'string' && TOOL_NAME.test(t.name) && t.inputSchema && typeof t.inputSchema === 'object',
      );
      discovered.set(upstream.name, { at: now(), tools });
      return tools;
    } catch (err) {
      deps.logger.warn({ upstream: upstream.name, err: errorMessage(err) }, 'upstream tool discovery failed');
      return cached?.tools ?? [];
    }
  };

  const list = async (): Promise<CatalogueTool[]> => {
    const lists = await Promise.all(deps.upstreams.map(async (u) => ({ u, tools: await upstreamTools(u) })));
    return [
      { ...API_CALL_TOOL, local: 'api.call' },
      ...lists.flatMap(({ u, tools }) => tools.map((t) => ({ ...t, name: `${u.name}.${t.name}`, upstream: u, local: t.name }))),
    ];
  };

  return {
    list,
    async find(name) {
      return (await list()).find((t) => t.name === name);
    },
    validator: createValidators(),
  };
}

/** Compiles input schemas with ajv, each (tool, schema) pair once. */
function createValidators(): (tool: CatalogueTool) => ArgumentValidator {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validators = new Map<string, ArgumentValidator>();
  return (tool) => {
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
    return v;
  };
}
