package cynode.mcp_tool_invoke_test

import data.cynode.mcp_tool_invoke

worker := {
	"kind": "worker",
	"node_id": "cloud-us-east-1-01",
	"labels": ["cloud", "provider_openai"],
	"agent_type": "worker",
}

put := {"tool": "artifacts.artifact_put", "server": "artifacts", "name": "artifact_put"}

ctx := {
	"task_id": "task-1",
	"job_id": "job-1",
	"lease_active": true,
	"arguments": {"task_id": "task-1", "name": "a.txt"},
}

example := {"action": "mcp.tool.invoke", "subject": worker, "resource": put, "context": ctx}

evaluate(request) := d if {
	d := mcp_tool_invoke.decision with input as request
}

decide(patch) := evaluate(object.union(example, patch))

reasons(patch) := decide(patch).reasons

test_worker_puts_an_artifact_for_its_task if {
	d := decide({})
	d.allow
	d.reasons == []
}

test_worker_calls_api_call if decide({"resource": {"tool": "api.call"}}).allow

test_empty_input_denied if {
	d := mcp_tool_invoke.decision with input as {}
	not d.allow
	"context_missing" in d.reasons
}

test_unknown_tool if reasons({"resource": {"tool": "shell.exec"}}) == ["tool_unknown"]

test_unknown_agent_type if {
	r := reasons({"subject": {"agent_type": "robot"}})
	"agent_type_unknown" in r
	"tool_not_allowed" in r
}

test_sandbox_tool_out_of_scope_for_pm if {
	r := reasons({"subject": {"agent_type": "pm"}})
	r == ["tool_not_allowed", "tool_out_of_scope"]
}

test_pm_reads_artifacts if {
	d := decide({"subject": {"agent_type": "pm"}, "resource": {"tool": "artifacts.artifact_get"}})
	d.allow
}

test_pa_may_not_call_providers if {
	r := reasons({"subject": {"agent_type": "pa"}, "resource": {"tool": "api.call"}})
	r == ["tool_not_allowed"]
}

test_sandbox_may_not_call_providers if {
	r := reasons({"subject": {"agent_type": "sandbox"}, "resource": {"tool": "api.call"}})
	r == ["tool_not_allowed"]
}

test_tool_disabled_by_admin if {
	d := mcp_tool_invoke.decision with input as example
		with data.runtime.settings as {"mcp.disabled_tools": {"artifacts.artifact_put": true}}
	d.reasons == ["tool_disabled"]
}

test_other_tool_disabled if {
	d := mcp_tool_invoke.decision with input as example
		with data.runtime.settings as {"mcp.disabled_tools": {"api.call": true}}
	d.allow
}

test_no_lease if reasons({"context": {"lease_active": false}}) == ["lease_required"]

test_lease_state_missing if "context_missing" in reasons({"context": {"lease_active": null}})

test_task_argument_of_another_task if reasons({"context": {"arguments": {"task_id": "task-2"}}}) == ["task_mismatch"]

test_task_argument_missing if {
	no_task := {"task_id": "task-1", "job_id": "job-1", "lease_active": true, "arguments": {"name": "a.txt"}}
	d := mcp_tool_invoke.decision with input as {"subject": worker, "resource": put, "context": no_task}
	d.reasons == ["task_mismatch"]
}

test_tool_without_task_argument if {
	d := mcp_tool_invoke.decision with input as object.union(example, {"context": {"arguments": {"task_id": "other"}}})
		with data.config.mcp_tool_invoke.tools as {"artifacts.artifact_put": {"scope": "sandbox"}}
	d.allow
}
