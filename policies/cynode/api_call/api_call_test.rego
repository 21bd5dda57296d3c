package cynode.api_call_test

import data.cynode.api_call

# Seed Example 1: a cloud worker in us-east-1 serving OpenAI through the provider API.
worker := {
	"kind": "worker",
	"id": "cloud-us-east-1-01",
	"node_id": "cloud-us-east-1-01",
	"labels": ["cloud", "provider_openai"],
	"region": "us-east-1",
	"inference_mode": "provider_api",
	"supported_providers": ["openai"],
	"supported_models": [],
	"rate_limits": {"rpm": 300},
}

orchestrator := {"kind": "orchestrator", "id": "admin", "labels": []}

chat := {
	"provider": "openai",
	"operation": "chat.completions",
	"model": "gpt-4o-mini",
	"stream": false,
	"estimated_cost_usd": 0.01,
}

haiku := {
	"provider": "anthropic",
	"operation": "messages",
	"model": "claude-3-5-haiku-latest",
	"estimated_cost_usd": 0.1,
}

sonnet := object.union(haiku, {"model": "claude-sonnet-4-5"})

budget := {"limit_usd": 5, "spent_usd": 1, "reserved_usd": 0, "remaining_usd": 4}

ctx := {
	"task_id": "task-1",
	"job_id": "job-1",
	"user_id": "user-1",
	"project_id": null,
	"group_id": null,
	"region": "us-east-1",
	"preferences": {"cloud_allowed": true, "provider": null, "regions": [], "max_cost_usd": null},
	"requirements": {},
	"budget": {"task": budget, "user": null, "subject": null},
}

decide(subject, resource, context) := d if {
	request := {"action": "api.call", "subject": subject, "resource": resource, "context": context}
	d := api_call.decision with input as request
}

# object.union merges objects deeply, so a patch names only the fields it changes.
call(patch) := decide(
	object.union(worker, object.get(patch, "subject", {})),
	object.union(chat, object.get(patch, "resource", {})),
	object.union(ctx, object.get(patch, "context", {})),
)

direct_ctx := object.union(ctx, {"region": "local"})

# The Example 1 call with its input replaced, for tests that change data with `with`.
example := {"subject": worker, "resource": chat, "context": ctx}

reasons(patch) := call(patch).reasons

test_example_1_worker_calls_openai_chat if {
	d := call({})
	d.allow
	d.reasons == []
}

test_example_1_allows_gpt_4o if call({"resource": {"model": "gpt-4o"}}).allow

test_direct_routing_allowed if {
	d := decide(orchestrator, chat, object.union(ctx, {"region": "local", "job_id": null}))
	d.allow
	d.limits.subject == {"rpm": 60000, "tpm": 200000000}
}

test_direct_routing_any_catalogue_model if decide(orchestrator, sonnet, direct_ctx).allow

test_empty_input_denied if {
	d := api_call.decision with input as {}
	not d.allow
	"context_missing" in d.reasons
	d.limits.subject == {"rpm": 0, "tpm": 0}
}

test_unknown_subject_kind_denied if "context_missing" in reasons({"subject": {"kind": "robot"}})

test_missing_estimate_denied if {
	d := decide(worker, object.remove(chat, ["estimated_cost_usd"]), ctx)
	"context_missing" in d.reasons
}

test_provider_outside_catalogue if "provider_not_allowed" in reasons({"resource": {"provider": "mistral"}})

test_operation_outside_catalogue if "operation_not_allowed" in reasons({"resource": {"operation": "images"}})

test_model_outside_catalogue if "model_not_allowed" in reasons({"resource": {"model": "gpt-3.5-turbo"}})

test_provider_without_grant if {
	r := reasons({"resource": {"provider": "anthropic", "operation": "messages", "model": "claude-3-5-haiku-latest"}})
	"provider_not_allowed" in r
	"provider_not_supported" in r
}

test_operation_without_grant if {
	r := reasons({"resource": {"operation": "embeddings", "model": "text-embedding-3-small"}})
	r == ["operation_not_allowed"]
}

only_gpt_4o := {"models": {"gpt-4o": true}}

test_model_in_catalogue_but_not_granted if {
	d := api_call.decision with input as {"subject": worker, "resource": chat, "context": ctx}
		with data.config.api_call.grants.labels as {"provider_openai": {"openai": {"chat.completions": only_gpt_4o}}}
	d.reasons == ["model_not_allowed"]
}

test_node_grant if {
	node_grant := {"cloud-us-east-1-01": {"openai": {"chat.completions": {"models": {"*": true}}}}}
	d := api_call.decision with input as object.union(example, {"subject": {"labels": ["cloud"]}})
		with data.config.api_call.grants.nodes as node_grant
	d.allow
}

test_label_wildcard_grant if {
	anthropic_worker := object.union(worker, {"labels": ["cloud", "provider_anthropic"]})
	decide(object.union(anthropic_worker, {"supported_providers": ["anthropic"]}), sonnet, ctx).allow
}

test_model_not_supported_by_worker if reasons({"subject": {"supported_models": ["gpt-4o"]}}) == ["model_not_supported"]

test_listed_model_supported if call({"subject": {"supported_models": ["gpt-4o-mini"]}}).allow

test_provider_override_unmet if {
	r := reasons({"context": {"preferences": {"provider": "anthropic"}}})
	r == ["provider_override_unmet"]
}

test_provider_override_met if call({"context": {"preferences": {"provider": "openai"}}}).allow

test_region_outside_provider_regions if reasons({"context": {"region": "ap-south-1"}}) == ["region_not_allowed"]

test_region_missing if "region_not_allowed" in decide(worker, chat, object.remove(ctx, ["region"])).reasons

test_region_not_preferred if reasons({"context": {"preferences": {"regions": ["eu-west-1"]}}}) == ["region_not_allowed"]

test_region_preferred if call({"context": {"preferences": {"regions": ["us-east-1"]}}}).allow

test_region_not_required if {
	r := reasons({"context": {"requirements": {"regions": ["eu-central-1"]}}})
	r == ["region_not_allowed"]
}

test_region_required if call({"context": {"requirements": {"regions": ["us-east-1"]}}}).allow

test_kill_switch if {
	d := api_call.decision with input as {"subject": worker, "resource": chat, "context": ctx}
		with data.runtime.settings as {"cloud_routing.enabled": false}
	d.reasons == ["cloud_routing_disabled"]
}

test_kill_switch_stops_direct_routing if {
	d := api_call.decision with input as {"subject": orchestrator, "resource": chat, "context": direct_ctx}
		with data.runtime.settings as {"cloud_routing.enabled": false}
	not d.allow
}

test_kill_switch_on if {
	d := api_call.decision with input as {"subject": worker, "resource": chat, "context": ctx}
		with data.runtime.settings as {"cloud_routing.enabled": true}
	d.allow
}

test_cloud_not_allowed_by_preferences if {
	r := reasons({"context": {"preferences": {"cloud_allowed": false}}})
	r == ["cloud_not_allowed_by_preferences"]
}

test_cloud_preference_unset if {
	r := reasons({"context": {"preferences": {"cloud_allowed": null}}})
	r == ["cloud_not_allowed_by_preferences"]
}

test_cloud_not_allowed_by_policy if {
	d := api_call.decision with input as {"subject": worker, "resource": chat, "context": ctx}
		with data.config.api_call.cloud.allowed as false
	d.reasons == ["cloud_not_allowed_by_policy"]
}

test_cost_over_user_limit if reasons({"context": {"preferences": {"max_cost_usd": 0.001}}}) == ["cost_limit_exceeded"]

test_cost_within_user_limit if call({"context": {"preferences": {"max_cost_usd": 1}}}).allow

test_cost_over_policy_limit if {
	r := reasons({"resource": {"estimated_cost_usd": 3}, "context": {"budget": {"task": {"remaining_usd": 100}}}})
	r == ["cost_limit_exceeded"]
}

test_budget_missing if reasons({"context": {"budget": {"task": null}}}) == ["budget_missing"]

test_budget_not_required if {
	d := api_call.decision with input as object.union(example, {"context": {"budget": {"task": null}}})
		with data.config.api_call.require_task_budget as false
	d.allow
}

test_task_budget_exceeded if reasons({"context": {"budget": {"task": {"remaining_usd": 0.001}}}}) == ["budget_exceeded"]

test_user_budget_exceeded if reasons({"context": {"budget": {"user": {"remaining_usd": 0}}}}) == ["budget_exceeded"]

test_subject_budget_exceeded if {
	r := reasons({"context": {"budget": {"subject": {"remaining_usd": 0.005}}}})
	r == ["budget_exceeded"]
}

test_budget_exactly_enough if call({"context": {"budget": {"task": {"remaining_usd": 0.01}}}}).allow

test_blocked_subject if "subject_blocked" in reasons({"subject": {"id": "cloud-quarantined-01"}})

test_deny_overrides_grant if {
	d := call({"context": {"region": "ap-south-1", "preferences": {"cloud_allowed": false}}})
	not d.allow
	d.reasons == ["cloud_not_allowed_by_preferences", "region_not_allowed"]
}

test_limits_lowered_to_declared if {
	limits := call({}).limits
	limits.subject == {"rpm": 300, "tpm": 2000000}
	limits.credential == {"rpm": 30000, "tpm": 150000000}
}

test_limits_default_without_declaration if {
	d := decide(object.remove(worker, ["rate_limits"]), chat, ctx)
	d.limits.subject == {"rpm": 600, "tpm": 2000000}
}

test_declared_limit_above_policy_ignored if {
	d := call({"subject": {"rate_limits": {"rpm": 100000}}})
	d.limits.subject.rpm == 600
}

test_label_and_node_limits if {
	label_limits := {"cloud": {"rpm": 100}, "provider_openai": {"rpm": 50, "tpm": 1000}}
	d := api_call.decision with input as object.union(example, {"subject": object.remove(worker, ["rate_limits"])})
		with data.config.api_call.rate_limits.subject.labels as label_limits
		with data.config.api_call.rate_limits.subject.nodes as {"cloud-us-east-1-01": {"tpm": 500}}
	d.limits.subject == {"rpm": 50, "tpm": 500}
}

test_credential_limits_per_provider if {
	d := decide(orchestrator, haiku, direct_ctx)
	d.limits.credential == {"rpm": 4000, "tpm": 2000000}
}

test_credential_limits_default if {
	d := decide(orchestrator, object.union(chat, {"provider": "mistral"}), ctx)
	d.limits.credential == {"rpm": 1000, "tpm": 1000000}
	not d.allow
}
