import {
  CallToolRequestSchema,
  InitializeRequestSchema,
  ListToolsRequestSchema,
  PingRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

// The methods this server answers, by their request schema. The SDK reports a known method
// with malformed params as an internal error (-32603); it is the caller's mistake (-32602).
const REQUEST_SCHEMAS = new Map<string, { safeParse(v: unknown): { success: boolean } }>([
  ['initialize', InitializeRequestSchema],
  ['ping', PingRequestSchema],
  ['tools/list', ListToolsRequestSchema],
  ['tools/call', CallToolRequestSchema],
]);

/** The first request in a JSON-RPC message (or batch) whose params its method's schema refuses. */
export function malformedRequest(message: unknown): { id?: unknown; method: string } | undefined {
  return (Array.isArray(message) ? message : [message]).find((m) => {
    const req = m as { id?: unknown; method?: unknown } | null;
    return (
      req !== null &&
      typeof req === 'object' &&
      typeof req.method === 'string' &&
      'id' in req &&
      REQUEST_SCHEMAS.get(req.method)?.safeParse(req).success === false
    );
  });
}

/** An HTTP answer carrying a JSON-RPC error that belongs to no request (`id: null`). */
export function rpcError(status: number, code: number, message: string, data?: Record<string, unknown>) {
  return { status, body: { jsonrpc: '2.0', id: null, error: { code, message, ...(data && { data }) } } };
}
