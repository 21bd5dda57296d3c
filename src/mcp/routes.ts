import type Router from '@koa/router';
import { createMcpGateway, type McpGatewayDeps } from './service.js';

/** Serves the MCP gateway (`src/mcp/service.ts`) at `/mcp`, every method (non-POST gets 405 there). */
export function mcpRoutes(router: Router, deps: McpGatewayDeps): void {
  const gateway = createMcpGateway(deps);
  router.all('/mcp', (ctx) => gateway.serve(ctx));
}
