import type { McpCaller } from './caller.js';
import type { CatalogueTool } from './catalogue.js';

/** What `mcp.tool.invoke` is told about the call beyond who and which tool: the job behind it. */
export interface ToolInvokeContext {
  task_id: string;
  job_id: string | null;
  lease_active: boolean;
  /** Only the task argument, never the payload: this input reaches the decision log and the forward token. */
  arguments: Record<string, unknown>;
}

/** The one builder of the `mcp.tool.invoke` policy input, for listing and for calling alike. */
export function toolInvokeInput(caller: McpCaller, tool: CatalogueTool, context: ToolInvokeContext) {
  return {
    action: 'mcp.tool.invoke',
    subject: { kind: 'worker', node_id: caller.worker.nodeId, labels: caller.worker.capabilities.labels, agent_type: caller.agentType },
    resource: { tool: tool.name, server: tool.upstream?.name ?? 'gateway', name: tool.local },
    context,
  };
}
