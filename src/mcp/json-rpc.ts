import { ErrorCode } from '@modelcontextprotocol/sdk/types.js';

/** A JSON-RPC request id: a string or an integer. */
export type RequestId = string | number;

/** A JSON-RPC request: it is answered, by its id. */
export interface RpcRequest {
  jsonrpc: '2.0';
  id: RequestId;
  method: string;
  params?: Record<string, unknown>;
}

/** A JSON-RPC answer to one request: its result or its error. */
export type RpcAnswer =
  | { jsonrpc: '2.0'; id: RequestId; result: Record<string, unknown> }
  | { jsonrpc: '2.0'; id: RequestId; error: { code: number; message: string; data?: unknown } };

/** What a message in a POST is: a request (answered), a notification or a response (both only accepted). */
export type MessageKind = 'request' | 'notification' | 'response';

const REQUEST_KEYS = new Set(['jsonrpc', 'id', 'method', 'params']);
const NOTIFICATION_KEYS = new Set(['jsonrpc', 'method', 'params']);
const RESULT_KEYS = new Set(['jsonrpc', 'id', 'result']);
const ERROR_KEYS = new Set(['jsonrpc', 'id', 'error']);

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isId = (v: unknown): v is RequestId => typeof v === 'string' || Number.isInteger(v);
const onlyKeys = (m: Record<string, unknown>, keys: Set<string>) => Object.keys(m).every((k) => keys.has(k));

/** `params` and `params._meta` are objects when present (MCP's base request and notification params). */
function paramsOk(params: unknown): boolean {
  if (params === undefined) return true;
  return isObject(params) && (params._meta === undefined || isObject(params._meta));
}

/**
 * What a message is, by the JSON-RPC 2.0 shapes MCP accepts (exact keys, string or integer
 * ids, object params); undefined when it is none of them.
 */
export function messageKind(m: unknown): MessageKind | undefined {
  if (!isObject(m) || m.jsonrpc !== '2.0') return undefined;
  if (typeof m.method === 'string') {
    if (!paramsOk(m.params)) return undefined;
    if ('id' in m) return isId(m.id) && onlyKeys(m, REQUEST_KEYS) ? 'request' : undefined;
    return onlyKeys(m, NOTIFICATION_KEYS) ? 'notification' : undefined;
  }
  if ('result' in m) return isId(m.id) && isObject(m.result) && onlyKeys(m, RESULT_KEYS) ? 'response' : undefined;
  const e = m.error;
  const errorOk = isObject(e) && Number.isInteger(e.code) && typeof e.message === 'string';
  return errorOk && (m.id === undefined || isId(m.id)) && onlyKeys(m, ERROR_KEYS) ? 'response' : undefined;
}

const optionalString = (v: unknown) => v === undefined || typeof v === 'string';

// What the params of each method this server answers must hold (beyond object params, checked
// with the message). A known method with params that do not fit is the caller's mistake (-32602).
const PARAMS_FIT: Record<string, (p: Record<string, unknown> | undefined) => boolean> = {
  initialize: (p) =>
    p !== undefined &&
    typeof p.protocolVersion === 'string' &&
    isObject(p.capabilities) &&
    isObject(p.clientInfo) &&
    typeof p.clientInfo.name === 'string' &&
    typeof p.clientInfo.version === 'string',
  ping: () => true,
  'tools/list': (p) => optionalString(p?.cursor),
  'tools/call': (p) =>
    p !== undefined &&
    typeof p.name === 'string' &&
    (p.arguments === undefined || isObject(p.arguments)) &&
    (p.task === undefined || isObject(p.task)),
};

/** Whether a request's params fit its method (any params do for a method this server does not answer). */
export function paramsFit(request: RpcRequest): boolean {
  // Own keys only: a method named like an Object member (`__proto__`, `constructor`) is simply unknown.
  if (!Object.hasOwn(PARAMS_FIT, request.method)) return true;
  return paramsOk(request.params) && PARAMS_FIT[request.method]!(request.params);
}

/** An HTTP answer carrying a JSON-RPC error that belongs to no request (`id: null`). */
export function rpcError(status: number, code: number, message: string, data?: Record<string, unknown>) {
  return { status, body: { jsonrpc: '2.0', id: null, error: { code, message, ...(data && { data }) } } };
}

/**
 * The error answer to request `id` for what its handler threw: an McpError keeps its code,
 * message and data; anything else is an internal error (-32603) with its message.
 */
export function errorAnswer(id: RequestId, err: unknown): RpcAnswer {
  const e = (err ?? {}) as { code?: unknown; message?: unknown; data?: unknown };
  return {
    jsonrpc: '2.0',
    id,
    error: {
      code: Number.isSafeInteger(e.code) ? (e.code as number) : ErrorCode.InternalError,
      message: typeof e.message === 'string' ? e.message : 'Internal error',
      ...(e.data !== undefined && { data: e.data }),
    },
  };
}
