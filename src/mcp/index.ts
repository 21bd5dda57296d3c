import type { ChainedLog } from '../lib/chained-log.js';
import type { ToolAuditEvent } from './audit.js';

export { AGENT_TYPES, type AgentTokens, createAgentTokens, type IssuedAgentToken, issueAgentToken } from './agent-tokens.js';
export { createToolAudit, type ToolAuditEvent } from './audit.js';
export { type McpCaller } from './caller.js';
export { type CatalogueTool, createToolCatalogue, type ToolCatalogue } from './catalogue.js';
export { type McpConfig, parseMcpConfig, parseUpstreams } from './config.js';
export { MCP_DENIED, MCP_UPSTREAM_FAILED } from './errors.js';
export { MCP_ROUTES, type McpRouteDeps } from './routes.js';
export { createMcpGateway, type McpGateway, type McpGatewayDeps } from './service.js';
export {
  createUpstreamClient,
  STDIO_TOKEN_META,
  stdioBoundBody,
  type Upstream,
  type UpstreamClient,
  upstreamAudience,
} from './upstreams.js';
/** The MCP tool-call audit trail. */
export type ToolAudit = ChainedLog<ToolAuditEvent>;
