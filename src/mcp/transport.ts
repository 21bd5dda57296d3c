import { ErrorCode, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { messageKind, paramsFit, rpcError, type RpcRequest } from './json-rpc.js';

/** The most messages one POST may carry. */
export const MAX_BATCH = 100;

/** The request headers the transport checks. */
export interface TransportHeaders {
  accept: string;
  contentType: string;
  /** `MCP-Protocol-Version`, when sent. */
  protocolVersion: string | undefined;
}

type Refusal = ReturnType<typeof rpcError>;

/** The media type of a `Content-Type` value, without parameters, lower-cased. */
const mediaType = (value: string) => value.split(';', 1)[0]!.trim().toLowerCase();

/**
 * The requests of one POST to the MCP endpoint (MCP Streamable HTTP, stateless), checked in
 * the order the rules of the transport give them; the first rule broken refuses the whole POST:
 * - a known method with params that do not fit it: 400, -32602;
 * - the client must accept both `application/json` and `text/event-stream` (406) and send
 *   `application/json` (415);
 * - at most {@link MAX_BATCH} messages (400, -32600), each a JSON-RPC request, notification or
 *   response (400, -32700);
 * - `initialize` comes alone (400, -32600); any other POST names a supported protocol version,
 *   if it names one (400).
 * Notifications and responses are accepted and not acted on: this server sends no requests.
 */
export function readMessages(message: unknown, headers: TransportHeaders): { requests: RpcRequest[] } | { refused: Refusal } {
  const messages = Array.isArray(message) ? (message as unknown[]) : [message];
  const malformed = messages.find((m) => isRequestLike(m) && !paramsFit(m));
  if (malformed) return refused(rpcError(400, ErrorCode.InvalidParams, `invalid params for ${(malformed as RpcRequest).method}`));
  if (!headers.accept.includes('application/json') || !headers.accept.includes('text/event-stream'))
    return refused(rpcError(406, -32000, 'Not Acceptable: Client must accept both application/json and text/event-stream'));
  if (mediaType(headers.contentType) !== 'application/json')
    return refused(rpcError(415, -32000, 'Unsupported Media Type: Content-Type must be application/json'));
  if (messages.length > MAX_BATCH)
    return refused(rpcError(400, ErrorCode.InvalidRequest, `Invalid Request: Batch must not exceed ${MAX_BATCH} messages`));
  const kinds = messages.map(messageKind);
  if (kinds.includes(undefined)) return refused(rpcError(400, ErrorCode.ParseError, 'Parse error: Invalid JSON-RPC message'));
  const requests = messages.filter((_, i) => kinds[i] === 'request') as RpcRequest[];
  if (requests.some((r) => r.method === 'initialize')) {
    if (messages.length > 1)
      return refused(rpcError(400, ErrorCode.InvalidRequest, 'Invalid Request: Only one initialization request is allowed'));
  } else if (headers.protocolVersion !== undefined && !SUPPORTED_PROTOCOL_VERSIONS.includes(headers.protocolVersion)) {
    return refused(
      rpcError(
        400,
        -32000,
        `Bad Request: Unsupported protocol version: ${headers.protocolVersion} (supported versions: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`,
      ),
    );
  }
  return { requests };
}

const refused = (r: Refusal) => ({ refused: r });

/** A message with a method and an id, whatever else it holds: its params are checked before its shape. */
function isRequestLike(m: unknown): m is RpcRequest {
  return m !== null && typeof m === 'object' && typeof (m as { method?: unknown }).method === 'string' && 'id' in m;
}
