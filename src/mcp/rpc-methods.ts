import { ErrorCode, LATEST_PROTOCOL_VERSION, McpError, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import type { McpCaller } from './caller.js';
import { errorAnswer, type RpcAnswer, type RpcRequest } from './json-rpc.js';
import type { ToolCall, ToolCallParams } from './tool-call.js';
import type { ListedTool } from './tool-list.js';

/** What the MCP methods are served by. */
export interface RpcMethodDeps {
  callTool: ToolCall;
  listTools(caller: McpCaller): Promise<ListedTool[]>;
}

/** The MCP methods the gateway answers, built once and shared by every request. */
export interface RpcMethods {
  /** The answer to one request (params already checked against its method), as `caller`. */
  answer(caller: McpCaller, request: RpcRequest): Promise<RpcAnswer>;
}

const SERVER_INFO = { name: 'cynode-gateway', version: '1.0.0' };
const CAPABILITIES = { tools: { listChanged: false } };

type Handler = (caller: McpCaller, params: Record<string, unknown> | undefined) => Promise<Record<string, unknown>>;

/**
 * `initialize`, `ping`, `tools/list` and `tools/call`; any other method is -32601. Each request
 * is answered on its own: a handler's McpError is its error answer, anything else -32603.
 */
export function createRpcMethods(deps: RpcMethodDeps): RpcMethods {
  const handlers = new Map<string, Handler>([
    ['initialize', async (_caller, params) => initialized(params!.protocolVersion as string)],
    ['ping', async () => ({})],
    ['tools/list', async (caller) => ({ tools: await deps.listTools(caller) })],
    [
      'tools/call',
      (caller, params) => {
        // A task-augmented call would expect a task back; this server runs every call to its end.
        if (params!.task !== undefined) throw new McpError(ErrorCode.InvalidParams, 'task-augmented tool calls are not supported');
        return deps.callTool(caller, params as unknown as ToolCallParams);
      },
    ],
  ]);
  return {
    async answer(caller, request) {
      const handler = handlers.get(request.method);
      if (!handler) return { jsonrpc: '2.0', id: request.id, error: { code: ErrorCode.MethodNotFound, message: 'Method not found' } };
      try {
        return { jsonrpc: '2.0', id: request.id, result: await handler(caller, request.params) };
      } catch (err) {
        return errorAnswer(request.id, err);
      }
    },
  };
}

/** The answer to `initialize`: the client's protocol version when supported, else the latest; tools only. */
function initialized(requested: string) {
  const protocolVersion = SUPPORTED_PROTOCOL_VERSIONS.includes(requested) ? requested : LATEST_PROTOCOL_VERSION;
  return { protocolVersion, capabilities: CAPABILITIES, serverInfo: SERVER_INFO };
}
