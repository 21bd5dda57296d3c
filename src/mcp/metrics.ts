import { Counter, type Registry } from 'prom-client';

/** What the MCP gateway counts: tool calls by tool and outcome. */
export interface McpMetrics {
  mcpToolCalls: Counter<'tool' | 'outcome'>;
}

export function createMcpMetrics(registry: Registry): McpMetrics {
  return {
    mcpToolCalls: new Counter({
      name: 'cynode_mcp_tool_calls_total',
      help: 'MCP tools/call requests by tool (unknown for a name not in the catalogue) and outcome (ok, denied, error).',
      labelNames: ['tool', 'outcome'],
      registers: [registry],
    }),
  };
}
