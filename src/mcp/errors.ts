/** JSON-RPC error code of a tool call the gateway's policy refused (the implementation-defined range). */
export const MCP_DENIED = -32001;
/** JSON-RPC error code of a tool call that failed past the gateway: upstream refused, unreachable, too slow, too large. */
export const MCP_UPSTREAM_FAILED = -32002;
