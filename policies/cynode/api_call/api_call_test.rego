package cynode.api_call_test

import data.cynode.api_call

# The README's Example 1: a cloud worker in us-east-1 serving OpenAI through the provider API.
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

# Example 1 from a worker that declares no rate limits of its own (object.union would keep them).
undeclared := object.union(object.remove(example, ["subject"]), {"subject": object.remove(worker, ["rate_limits"])})

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

test_group_and_project_budgets_exceeded if {
	reasons({"context": {"budget": {"group": {"remaining_usd": 0}}}}) == ["budget_exceeded"]
	reasons({"context": {"budget": {"project": {"remaining_usd": 0.001}}}}) == ["budget_exceeded"]
}

test_model_budget_exceeded if {
	r := reasons({"context": {"budget": {"model": {"user": {"remaining_usd": 0.001, "period": "day"}}}}})
	r == ["budget_exceeded"]
}

test_model_budget_enough if call({"context": {"budget": {"model": {"task": {"remaining_usd": 1}, "user": null}}}}).allow

test_malformed_model_budget_denied if {
	"context_missing" in reasons({"context": {"budget": {"model": {"task": {"limit_usd": 5}}}}})
	"context_missing" in reasons({"context": {"budget": {"model": "plenty"}}})
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
	d := api_call.decision with input as undeclared
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

test_example_1_denies_gpt_3_5 if {
	r := reasons({"resource": {"model": "gpt-3.5-turbo"}})
	r == ["model_not_allowed"]
}

test_orchestrator_not_held_to_worker_support if {
	d := decide(orchestrator, object.union(chat, {"model": "gpt-4o"}), direct_ctx)
	d.allow
	not "provider_not_supported" in d.reasons
}

test_orchestrator_without_grant if {
	d := api_call.decision with input as {"subject": orchestrator, "resource": haiku, "context": direct_ctx}
		with data.config.api_call.grants.orchestrator as {"openai": {"chat.completions": {"models": {"*": true}}}}
	d.reasons == ["provider_not_allowed"]
}

test_wildcard_grant_stays_in_catalogue if {
	d := decide(orchestrator, object.union(chat, {"model": "gpt-3.5-turbo"}), direct_ctx)
	d.reasons == ["model_not_allowed"]
}

test_grants_of_label_and_node_add_up if {
	node_grant := {"cloud-us-east-1-01": {"openai": {"embeddings": {"models": {"*": true}}}}}
	embeddings := {"operation": "embeddings", "model": "text-embedding-3-small"}
	d := api_call.decision with input as object.union(example, {"resource": embeddings})
		with data.config.api_call.grants.nodes as node_grant
	d.allow
	e := api_call.decision with input as example with data.config.api_call.grants.nodes as node_grant
	e.allow
}

test_worker_without_supported_providers if {
	d := decide(object.remove(worker, ["supported_providers"]), chat, ctx)
	d.reasons == ["provider_not_supported"]
}

test_empty_provider_override_ignored if call({"context": {"preferences": {"provider": ""}}}).allow

test_preferences_without_optional_keys if {
	d := decide(worker, chat, object.union(ctx, {"preferences": {"cloud_allowed": true}}))
	d.allow
}

test_direct_routing_from_local_region if decide(orchestrator, chat, direct_ctx).limits.credential.rpm == 30000

test_region_missing_without_provider_regions if {
	no_regions := {"openai": {"operations": {"chat.completions": {"models": {"gpt-4o-mini": true}}}}}
	request := {"subject": worker, "resource": chat, "context": object.remove(ctx, ["region"])}
	d := api_call.decision with input as request with data.config.api_call.providers as no_regions
	d.allow
	p := api_call.decision with input as object.union(request, {"context": {"preferences": {"regions": ["us-east-1"]}}})
		with data.config.api_call.providers as no_regions
	p.reasons == ["region_not_allowed"]
	q := api_call.decision with input as object.union(request, {"context": {"requirements": {"regions": ["us-east-1"]}}})
		with data.config.api_call.providers as no_regions
	q.reasons == ["region_not_allowed"]
}

test_region_null if reasons({"context": {"region": null}}) == ["region_not_allowed"]

test_cost_at_policy_limit if {
	d := call({"resource": {"estimated_cost_usd": 2}, "context": {"budget": {"task": {"remaining_usd": 100}}}})
	d.allow
}

test_string_estimate_only_context_missing if {
	d := call({"resource": {"estimated_cost_usd": "lots"}, "context": {"preferences": {"max_cost_usd": 1}}})
	d.reasons == ["context_missing"]
}

test_malformed_budget_denied if {
	"context_missing" in reasons({"context": {"budget": {"user": {"limit_usd": 5}}}})
	"context_missing" in reasons({"context": {"budget": {"subject": "plenty"}}})
	"context_missing" in reasons({"context": {"budget": "plenty"}})
}

test_budget_without_user_and_subject_keys if call({"context": {"budget": {"task": budget}}}).allow

test_budget_missing_task_key if {
	d := decide(worker, chat, object.union(object.remove(ctx, ["budget"]), {"budget": {}}))
	d.reasons == ["budget_missing"]
}

test_all_budgets_within if {
	d := call({"context": {"budget": {"user": budget, "subject": budget}}})
	d.allow
}

test_blocked_orchestrator if {
	d := api_call.decision with input as {"subject": orchestrator, "resource": chat, "context": direct_ctx}
		with data.config.api_call.blocked_subjects as {"admin": true}
	d.reasons == ["subject_blocked"]
}

test_unblocked_subject if not "subject_blocked" in call({"subject": {"id": "cloud-us-east-1-02"}}).reasons

test_every_cloud_gate_at_once if {
	d := api_call.decision with input as object.union(example, {"context": {"preferences": {"cloud_allowed": false}}})
		with data.runtime.settings as {"cloud_routing.enabled": false}
		with data.config.api_call.cloud.allowed as false
	d.reasons == ["cloud_not_allowed_by_policy", "cloud_not_allowed_by_preferences", "cloud_routing_disabled"]
}

test_limits_on_deny if {
	d := call({"context": {"preferences": {"cloud_allowed": false}}})
	not d.allow
	d.limits == {"subject": {"rpm": 300, "tpm": 2000000}, "credential": {"rpm": 30000, "tpm": 150000000}}
}

test_declared_tpm_lowers_limit if {
	d := call({"subject": {"rate_limits": {"rpm": 300, "tpm": 90000}}})
	d.limits.subject == {"rpm": 300, "tpm": 90000}
}

test_declared_limits_not_numbers_ignored if {
	d := call({"subject": {"rate_limits": {"rpm": "300", "tpm": 0}}})
	d.limits.subject == {"rpm": 600, "tpm": 2000000}
}

test_label_limit_override_raises_default if {
	d := api_call.decision with input as undeclared
		with data.config.api_call.rate_limits.subject.labels as {"provider_openai": {"rpm": 1200}}
	d.limits.subject == {"rpm": 1200, "tpm": 2000000}
}

test_node_limit_overrides_labels if {
	d := api_call.decision with input as undeclared
		with data.config.api_call.rate_limits.subject.labels as {"cloud": {"rpm": 100}}
		with data.config.api_call.rate_limits.subject.nodes as {"cloud-us-east-1-01": {"rpm": 900}}
	d.limits.subject.rpm == 900
}

test_orchestrator_limits_ignore_label_overrides if {
	d := api_call.decision with input as {"subject": orchestrator, "resource": chat, "context": direct_ctx}
		with data.config.api_call.rate_limits.subject.nodes as {"admin": {"rpm": 1}}
	d.limits.subject == {"rpm": 60000, "tpm": 200000000}
}

test_limits_without_labels_list if {
	d := call({"subject": {"labels": "cloud"}})
	"context_missing" in d.reasons
	d.limits.subject == {"rpm": 300, "tpm": 2000000}
}

test_limits_zero_without_data if {
	d := api_call.decision with input as example with data.config.api_call.rate_limits as {}
	d.limits == {"subject": {"rpm": 0, "tpm": 0}, "credential": {"rpm": 0, "tpm": 0}}
}
