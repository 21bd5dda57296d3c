import type { DecisionService } from '../decisions/index.js';
import { ENTRYPOINTS } from '../policy/index.js';
import type { McpCaller } from './caller.js';
import type { ToolCatalogue } from './catalogue.js';
import { toolInvokeInput } from './policy-input.js';

/** A tool as `tools/list` shows it. */
export interface ListedTool {
  name: string;
  description?: string;
  inputSchema: Record<string, unknown>;
}

/**
 * `tools/list`: the catalogue's tools that `mcp.tool.invoke` lets this caller call at all.
 * Listing asks about the tool as such (any live lease, a task of its own); each call is still
 * decided on its own arguments and lease.
 */
export async function listVisibleTools(
  deps: { catalogue: ToolCatalogue; decisions: DecisionService },
  caller: McpCaller,
): Promise<ListedTool[]> {
  const visible: ListedTool[] = [];
  for (const tool of await deps.catalogue.list()) {
    const input = toolInvokeInput(caller, tool, { task_id: 'list', job_id: null, lease_active: true, arguments: { task_id: 'list' } });
    const { decision } = await deps.decisions.decide(ENTRYPOINTS.mcpToolInvoke, input, `mcp:${caller.worker.nodeId}`);
    if (decision.allow)
      visible.push({ name: tool.name, ...(tool.description && { description: tool.description }), inputSchema: tool.inputSchema });
  }
  return visible;
}
