import { ODD_VALUES, type Random } from './random.js';

const TOOLS = ['api.call', 'artifacts.artifact_put', 'artifacts.artifact_get', 'artifacts.artifact_list', 'shell.exec'];
const AGENTS = ['worker', 'sandbox', 'pm', 'pa', 'robot'];

const maybeOdd = (r: Random, value: unknown): unknown => (r.chance(0.04) ? r.pick(ODD_VALUES) : value);

/** One `mcp.tool.invoke` input: callers and tools that match, near misses, and malformed input. */
export function mcpToolInvokeInput(r: Random): unknown {
  if (r.chance(0.02)) return r.pick(ODD_VALUES);
  const task = `task-${r.int(5)}`;
  return {
    action: 'mcp.tool.invoke',
    subject: {
      kind: 'worker',
      node_id: maybeOdd(r, `node-${r.int(10)}`),
      labels: ['cloud'],
      agent_type: maybeOdd(r, r.chance(0.5) ? 'worker' : r.pick(AGENTS)),
    },
    resource: { tool: maybeOdd(r, r.chance(0.6) ? r.pick(TOOLS.slice(1, 4)) : r.pick(TOOLS)) },
    context: {
      task_id: maybeOdd(r, task),
      job_id: 'job-1',
      lease_active: maybeOdd(r, r.chance(0.85)),
      arguments: maybeOdd(r, r.chance(0.8) ? { task_id: task, name: 'a' } : r.chance(0.5) ? { task_id: 'other' } : {}),
    },
  };
}
