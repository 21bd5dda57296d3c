# METADATA
# title: MCP tool calls
# description: |
#   Decides whether a caller (a worker, or an agent acting for a worker's job) may call one
#   MCP tool through the gateway. Default deny: a call is allowed only with a complete input,
#   a known tool in scope for the agent type and on its allowlist, not switched off by an admin
#   (data.runtime.settings["mcp.disabled_tools"]), on a job the caller leases now, with any
#   task-scoped argument equal to the leased task. Data: data.config.mcp_tool_invoke.
package cynode.mcp_tool_invoke

import data.config.mcp_tool_invoke as tools_config
import data.cynode.lib
import data.runtime.settings

# METADATA
# title: decision
# description: The mcp.tool.invoke decision, {allow, reasons}; deny reasons override any allow.
# entrypoint: true
decision := {"allow": allow, "reasons": sort(deny)}

default allow := false

allow if {
	context_complete
	count(deny) == 0
}

subject := input.subject

resource := input.resource

ctx := input.context

context_complete if {
	lib.non_empty_string(subject.node_id)
	is_string(subject.agent_type)
	is_string(resource.tool)
	lib.non_empty_string(ctx.task_id)
	is_boolean(ctx.lease_active)
	is_object(ctx.arguments)
}

tool := tools_config.tools[resource.tool]

in_scope if tools_config.scopes[subject.agent_type][tool.scope]

on_allowlist if tools_config.allowlists[subject.agent_type][resource.tool]

# A task-scoped tool: its task argument must be the leased task (a missing one is a mismatch).
task_scoped if is_string(tool.task_argument)

task_argument_matches if ctx.arguments[tool.task_argument] == ctx.task_id

deny contains "context_missing" if not context_complete

deny contains "tool_unknown" if not tool

deny contains "agent_type_unknown" if not tools_config.scopes[subject.agent_type]

deny contains "tool_out_of_scope" if {
	tool
	tools_config.scopes[subject.agent_type]
	not in_scope
}

deny contains "tool_not_allowed" if {
	tool
	not on_allowlist
}

deny contains "tool_disabled" if settings["mcp.disabled_tools"][resource.tool] == true

deny contains "lease_required" if ctx.lease_active == false

deny contains "task_mismatch" if {
	task_scoped
	not task_argument_matches
}
