package cynode.dispatch_test

import data.cynode.dispatch

# The README's Example 1: a cloud worker in us-east-1 serving OpenAI through the provider API.
cloud_worker := {
	"node_id": "cloud-us-east-1-01",
	"labels": ["cloud", "provider_openai"],
	"region": "us-east-1",
	"provider": "aws",
	"inference_mode": "provider_api",
	"supported_providers": ["openai"],
	"max_concurrency": 4,
	"rate_limits": {"rpm": 300},
}

local_node := {
	"node_id": "lab-gpu-01",
	"labels": ["local", "gpu", "ollama"],
	"region": "onprem",
	"inference_mode": "ollama_local",
	"supported_providers": [],
	"supported_models": ["llama3"],
	"max_concurrency": 2,
}

openai_job := {
	"job_id": "job-1",
	"task_id": "task-1",
	"priority": 0,
	"requirements": {"labels": [], "providers": ["openai"], "models": [], "regions": []},
	"estimated_cost_usd": 0.02,
	"budget_usd": null,
	"preferred_node_id": null,
}

gpu_job := object.union(openai_job, {"requirements": {"labels": ["gpu"], "providers": [], "models": ["llama3"]}})

ctx := {
	"user_id": "user-1",
	"project_id": null,
	"group_id": null,
	"preferences": {
		"cloud_allowed": true,
		"provider": null,
		"regions": [],
		"max_cost_usd": null,
		"locality_max_wait_ms": 30000,
	},
	"load": {"active_jobs": 0, "max_concurrency": 4},
	"locality": {"waited_ms": 0},
}

decide(subject, job, context) := d if {
	d := dispatch.decision with input as {"action": "dispatch", "subject": subject, "resource": job, "context": context}
}

# object.union merges objects deeply, so a patch names only the fields it changes.
with_worker(patch) := decide(object.union(cloud_worker, patch), openai_job, ctx)

with_job(patch) := decide(cloud_worker, object.union(openai_job, patch), ctx)

with_prefs(patch) := decide(cloud_worker, openai_job, object.union(ctx, {"preferences": patch}))

denied_for(d, reason) if {
	d.allow == false
	d.reasons == [reason]
	d.score == 0
}

test_seed_example_cloud_worker_allowed if {
	decide(cloud_worker, openai_job, ctx) == {"allow": true, "reasons": [], "score": 100}
}

test_local_node_allowed_and_preferred_over_cloud if {
	d := decide(local_node, gpu_job, ctx)
	d == {"allow": true, "reasons": [], "score": 120}
	d.score > decide(cloud_worker, openai_job, ctx).score
}

test_empty_input_denied if {
	dispatch.decision with input as {} == {"allow": false, "reasons": ["context_missing"], "score": 0}
}

test_action_only_denied if {
	d := dispatch.decision with input as {"action": "dispatch"}
	d == {"allow": false, "reasons": ["context_missing"], "score": 0}
}

test_non_object_input_denied if {
	d := dispatch.decision with input as "dispatch"
	d == {"allow": false, "reasons": ["context_missing"], "score": 0}
}

test_no_input_not_allowed if {
	not dispatch.allow with input as {}
}

test_empty_node_id_denied if {
	denied_for(with_worker({"node_id": ""}), "context_missing")
}

test_labels_not_a_list_denied if {
	d := with_worker({"labels": "cloud"})
	not d.allow
	"context_missing" in d.reasons
}

test_missing_inference_mode_denied if {
	d := decide(object.remove(cloud_worker, ["inference_mode"]), openai_job, ctx)
	denied_for(d, "context_missing")
}

test_missing_supported_providers_denied if {
	d := decide(object.remove(cloud_worker, ["supported_providers"]), openai_job, ctx)
	not d.allow
	"context_missing" in d.reasons
}

test_missing_job_id_denied if {
	denied_for(decide(cloud_worker, object.remove(openai_job, ["job_id"]), ctx), "context_missing")
}

test_requirements_not_an_object_denied if {
	denied_for(with_job({"requirements": ["openai"]}), "context_missing")
}

test_missing_preferences_denied if {
	d := decide(cloud_worker, openai_job, object.remove(ctx, ["preferences"]))
	not d.allow
	"context_missing" in d.reasons
}

test_missing_load_denied if {
	denied_for(decide(cloud_worker, openai_job, object.remove(ctx, ["load"])), "context_missing")
}

test_missing_label_denied if {
	denied_for(with_job({"requirements": {"labels": ["gpu"]}}), "label_missing")
}

test_unsupported_provider_denied if {
	denied_for(with_job({"requirements": {"providers": ["anthropic"]}}), "provider_not_supported")
}

test_unsupported_model_denied if {
	mixtral_job := object.union(gpu_job, {"requirements": {"models": ["mixtral"]}})
	denied_for(decide(local_node, mixtral_job, ctx), "model_not_supported")
}

test_worker_without_model_list_serves_any_model if {
	with_job({"requirements": {"models": ["gpt-4o"]}}).allow
	with_worker({"supported_models": []}).allow
}

test_inference_mode_mismatch_denied if {
	denied_for(with_job({"requirements": {"inference_mode": "ollama_local"}}), "inference_mode_mismatch")
}

test_matching_inference_mode_allowed if {
	with_job({"requirements": {"inference_mode": "provider_api"}}).allow
}

test_required_region_not_met_denied if {
	denied_for(with_job({"requirements": {"regions": ["eu-west-1"]}}), "region_not_allowed")
}

test_required_region_met_allowed if {
	with_job({"requirements": {"regions": ["eu-west-1", "us-east-1"]}}).allow
}

test_worker_without_region_denied_when_regions_required if {
	onprem_job := object.union(gpu_job, {"requirements": {"regions": ["onprem"]}})
	d := decide(object.remove(local_node, ["region"]), onprem_job, ctx)
	denied_for(d, "region_not_allowed")
}

test_preferred_regions_not_met_denied if {
	denied_for(with_prefs({"regions": ["eu-west-1", "eu-central-1"]}), "region_not_allowed")
}

test_preferred_regions_met_allowed if {
	with_prefs({"regions": ["us-east-1"]}).allow
}

test_cloud_worker_outside_cloud_regions_denied if {
	denied_for(with_worker({"region": "ap-south-1"}), "region_not_allowed")
}

test_cloud_worker_without_region_denied if {
	denied_for(decide(object.remove(cloud_worker, ["region"]), openai_job, ctx), "region_not_allowed")
}

test_worker_at_capacity_denied if {
	denied_for(decide(cloud_worker, openai_job, object.union(ctx, {"load": {"active_jobs": 4}})), "worker_at_capacity")
}

test_worker_with_zero_concurrency_denied if {
	d := decide(cloud_worker, openai_job, object.union(ctx, {"load": {"max_concurrency": 0}}))
	denied_for(d, "worker_at_capacity")
}

test_unreported_load_counts_as_full if {
	unreported := object.union(object.remove(ctx, ["load"]), {"load": {}})
	denied_for(decide(cloud_worker, openai_job, unreported), "worker_at_capacity")
}

test_locality_wait_then_allowed if {
	waiting := object.union(openai_job, {"preferred_node_id": "lab-gpu-01"})
	denied_for(decide(cloud_worker, waiting, object.union(ctx, {"locality": {"waited_ms": 29999}})), "locality_wait")
	decide(cloud_worker, waiting, object.union(ctx, {"locality": {"waited_ms": 30000}})).allow
	decide(cloud_worker, waiting, object.union(ctx, {"locality": {"waited_ms": 45000}})).allow
}

test_locality_wait_without_reported_wait if {
	waiting := object.union(openai_job, {"preferred_node_id": "lab-gpu-01"})
	d := decide(cloud_worker, waiting, object.remove(ctx, ["locality"]))
	denied_for(d, "locality_wait")
}

test_no_locality_wait_when_preference_is_zero if {
	d := decide(
		cloud_worker,
		object.union(openai_job, {"preferred_node_id": "lab-gpu-01"}),
		object.union(ctx, {"preferences": {"locality_max_wait_ms": 0}}),
	)
	d.allow
}

test_no_locality_wait_without_a_wait_preference if {
	waiting := object.union(openai_job, {"preferred_node_id": "lab-gpu-01"})
	no_wait := json.remove(ctx, ["preferences/locality_max_wait_ms"])
	decide(cloud_worker, waiting, no_wait).allow
}

test_no_locality_wait_for_empty_preferred_node if {
	with_job({"preferred_node_id": ""}).allow
}

test_provider_override_unmet_denied if {
	denied_for(with_prefs({"provider": "anthropic"}), "provider_override_unmet")
}

test_requirement_provider_not_allowed if {
	d := decide(
		object.union(cloud_worker, {"supported_providers": ["openai", "shadyai"]}),
		object.union(openai_job, {"requirements": {"providers": ["shadyai"]}}),
		ctx,
	)
	denied_for(d, "provider_not_allowed")
}

test_override_provider_not_allowed if {
	d := decide(
		object.union(cloud_worker, {"supported_providers": ["openai", "shadyai"]}),
		openai_job,
		object.union(ctx, {"preferences": {"provider": "shadyai"}}),
	)
	denied_for(d, "provider_not_allowed")
}

test_user_cost_limit_exceeded if {
	denied_for(with_prefs({"max_cost_usd": 0.01}), "cost_limit_exceeded")
}

test_user_cost_limit_met if {
	with_prefs({"max_cost_usd": 0.02}).allow
}

test_policy_cost_limit_exceeded if {
	denied_for(with_job({"estimated_cost_usd": 7.5}), "cost_limit_exceeded")
}

test_budget_exceeded if {
	denied_for(with_job({"budget_usd": 0.01}), "budget_exceeded")
}

test_budget_met if {
	with_job({"budget_usd": 2}).allow
}

test_kill_switch_denies_cloud_not_local if {
	d := decide(cloud_worker, openai_job, ctx) with data.runtime.settings as {"cloud_routing.enabled": false}
	denied_for(d, "cloud_routing_disabled")
	decide(local_node, gpu_job, ctx).allow with data.runtime.settings as {"cloud_routing.enabled": false}
}

test_cloud_routing_enabled_allows if {
	decide(cloud_worker, openai_job, ctx).allow with data.runtime.settings as {"cloud_routing.enabled": true}
}

test_cloud_routing_unset_allows if {
	decide(cloud_worker, openai_job, ctx).allow with data.runtime.settings as {}
}

test_only_explicit_false_switches_cloud_off if {
	decide(cloud_worker, openai_job, ctx).allow with data.runtime.settings as {"cloud_routing.enabled": "false"}
}

test_cloud_not_allowed_by_preferences if {
	denied_for(with_prefs({"cloud_allowed": false}), "cloud_not_allowed_by_preferences")
	d := decide(cloud_worker, openai_job, object.union(ctx, {"preferences": {"cloud_allowed": "yes"}}))
	denied_for(d, "cloud_not_allowed_by_preferences")
}

test_local_node_ignores_cloud_preference if {
	decide(local_node, gpu_job, object.union(ctx, {"preferences": {"cloud_allowed": false}})).allow
}

test_cloud_not_allowed_by_policy if {
	d := decide(cloud_worker, openai_job, ctx) with data.config.dispatch.cloud.allowed as false
	denied_for(d, "cloud_not_allowed_by_policy")
}

test_preferred_node_scores_higher if {
	preferred := with_job({"preferred_node_id": "cloud-us-east-1-01"})
	preferred == {"allow": true, "reasons": [], "score": 140}
	preferred.score > decide(cloud_worker, openai_job, ctx).score
}

test_lower_load_scores_higher if {
	idle := decide(cloud_worker, openai_job, object.union(ctx, {"load": {"active_jobs": 0}}))
	busy := decide(cloud_worker, openai_job, object.union(ctx, {"load": {"active_jobs": 2}}))
	busy.score == 85
	idle.score > busy.score
}

test_provider_override_met_scores_higher if {
	with_prefs({"provider": "openai"}).score == 110
}

test_no_load_penalty_without_a_positive_limit if {
	dispatch.load_penalty == 0 with input as {"context": {"load": {"active_jobs": 1, "max_concurrency": 0}}}
}

test_priority_added_to_score if {
	with_job({"priority": 5}).score == 105
	with_job({"priority": -3}).score == 97
	with_job({"priority": "high"}).score == 100
	decide(cloud_worker, object.remove(openai_job, ["priority"]), ctx).score == 100
}

# The weights are data: an operator retunes the score without touching the policy.
test_score_weights_come_from_data if {
	weights := {"base": 1000, "preferred_node": 1, "provider_override": 2, "local_node": 3, "load": 400}
	preferred := with_job({"preferred_node_id": "cloud-us-east-1-01"}) with data.config.dispatch.score_weights as weights
	preferred.score == 1001
	busy_ctx := object.union(ctx, {"load": {"active_jobs": 2}})
	busy := decide(cloud_worker, openai_job, busy_ctx) with data.config.dispatch.score_weights as weights
	busy.score == 800
	local := decide(local_node, gpu_job, ctx) with data.config.dispatch.score_weights as weights
	local.score == 1003
}

test_all_reasons_reported_sorted if {
	worker := object.union(cloud_worker, {
		"region": "ap-south-1",
		"supported_providers": ["anthropic"],
		"supported_models": ["gpt-4o-mini"],
	})
	no_id_job := {"preferred_node_id": "lab-gpu-01", "estimated_cost_usd": 7.5, "budget_usd": 1, "requirements": {
		"labels": ["gpu"],
		"providers": ["shadyai"],
		"models": ["gpt-4o"],
		"inference_mode": "ollama_local",
	}}
	context := object.union(ctx, {
		"preferences": {"cloud_allowed": false, "provider": "openai"},
		"load": {"active_jobs": 9},
	})
	d := decide(worker, no_id_job, context) with data.runtime.settings as {"cloud_routing.enabled": false}
		with data.config.dispatch.cloud.allowed as false
	d == {"allow": false, "score": 0, "reasons": [
		"budget_exceeded",
		"cloud_not_allowed_by_policy",
		"cloud_not_allowed_by_preferences",
		"cloud_routing_disabled",
		"context_missing",
		"cost_limit_exceeded",
		"inference_mode_mismatch",
		"label_missing",
		"locality_wait",
		"model_not_supported",
		"provider_not_allowed",
		"provider_not_supported",
		"provider_override_unmet",
		"region_not_allowed",
		"worker_at_capacity",
	]}
}

test_cloud_regions_come_from_data if {
	d := decide(cloud_worker, openai_job, ctx) with data.config.dispatch.cloud_regions as {"eu-west-1": true}
	denied_for(d, "region_not_allowed")
}

test_providers_come_from_data if {
	d := decide(cloud_worker, openai_job, ctx) with data.config.dispatch.providers as {"anthropic": true}
	denied_for(d, "provider_not_allowed")
}

test_cost_ceiling_comes_from_data if {
	d := decide(cloud_worker, openai_job, ctx) with data.config.dispatch.max_cost_usd_per_job as 0.01
	denied_for(d, "cost_limit_exceeded")
}
