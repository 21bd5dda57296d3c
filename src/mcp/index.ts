import type { ChainedLog } from '../lib/chained-log.js';
import type { ToolAuditEvent } from './audit.js';

export { AGENT_TYPES, agentTokenRoutes, type AgentTokens, createAgentTokens } from './agent-tokens.js';
export { createToolAudit, type ToolAuditEvent } from './audit.js';
export { MCP_DENIED, MCP_UPSTREAM_FAILED, mcpRoutes } from './gateway.js';
export { createUpstreamClient, parseUpstreams, STDIO_TOKEN_META, stdioBoundBody, type Upstream, type UpstreamClient, upstreamAudience } from './upstreams.js';
/** The MCP tool-call audit trail. */
export type ToolAudit = ChainedLog<ToolAuditEvent>;
