import type { DecisionService } from '../decisions/index.js';
import { ENTRYPOINTS } from '../policy/index.js';
import type { McpCaller } from './caller.js';
import type { CatalogueTool, ToolCatalogue } from './catalogue.js';
import { toolInvokeInput } from './policy-input.js';

/** A tool as `tools/list` shows it. */
export interface ListedTool {
  name: string;
  description?: string;
  inputSchema: Record<string, unknown>;
}

/** Answers `tools/list` for a caller. */
export type ToolLister = (caller: McpCaller) => Promise<ListedTool[]>;

/** What listing needs; `visibleForMs` is how long one caller's decided list is answered again. */
export interface ToolListerDeps {
  catalogue: ToolCatalogue;
  decisions: DecisionService;
  visibleForMs: number;
  /** The clock the reuse is measured on (tests move it). */
  now?: () => number;
}

/** Past this many callers kept, the kept lists start over. */
const MAX_KEPT = 10_000;

interface Kept {
  at: number;
  /** The catalogue the list was decided on: a changed catalogue is decided again. */
  catalogue: readonly CatalogueTool[];
  visible: Promise<ListedTool[]>;
}

/**
 * `tools/list`: the catalogue's tools that `mcp.tool.invoke` lets this caller call at all.
 * Listing asks about each tool as such (any live lease, a task of its own), one decision per
 * tool, each recorded; each call is still decided on its own arguments and lease. What is
 * visible is not a permission, so a caller's decided list (by node, agent type and labels) is
 * answered again for `visibleForMs` while the catalogue stays the same: an agent that lists
 * at every step costs no decisions, and a changed setting or bundle shows within that time.
 * Nothing is visible that a decision did not allow (default deny); a failed decision fails the list.
 */
export function createToolLister(deps: ToolListerDeps): ToolLister {
  const now = deps.now ?? Date.now;
  const kept = new Map<string, Kept>();
  return async (caller) => {
    const catalogue = await deps.catalogue.list();
    const key = JSON.stringify([caller.worker.nodeId, caller.agentType, caller.worker.capabilities.labels]);
    const hit = kept.get(key);
    if (hit && now() - hit.at < deps.visibleForMs && sameTools(hit.catalogue, catalogue)) return hit.visible;
    const visible = decideVisible(deps.decisions, caller, catalogue);
    if (kept.size >= MAX_KEPT) kept.clear();
    const entry = { at: now(), catalogue, visible };
    kept.set(key, entry);
    // A list that could not be decided is not kept: the next caller asks again.
    visible.catch(() => kept.get(key) === entry && kept.delete(key));
    return visible;
  };
}

/** One decision per tool, recorded; the allowed tools, in catalogue order. */
async function decideVisible(decisions: DecisionService, caller: McpCaller, catalogue: readonly CatalogueTool[]): Promise<ListedTool[]> {
  const visible: ListedTool[] = [];
  for (const tool of catalogue) {
    const input = toolInvokeInput(caller, tool, { task_id: 'list', job_id: null, lease_active: true, arguments: { task_id: 'list' } });
    const { decision } = await decisions.decide(ENTRYPOINTS.mcpToolInvoke, input, `mcp:${caller.worker.nodeId}`);
    if (decision.allow)
      visible.push({ name: tool.name, ...(tool.description && { description: tool.description }), inputSchema: tool.inputSchema });
  }
  return visible;
}

/** The same tools, object for object: the catalogue builds a tool anew only when its upstream lists again. */
function sameTools(a: readonly CatalogueTool[], b: readonly CatalogueTool[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}
