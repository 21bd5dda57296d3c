package cynode.register_test

import data.cynode.register

cloud_worker := {
	"node_id": "cloud-us-east-1-01",
	"labels": ["cloud", "provider_openai"],
	"region": "us-east-1",
	"provider": "aws",
	"inference_mode": "provider_api",
	"supported_providers": ["openai"],
	"supported_models": ["gpt-4o-mini"],
	"max_concurrency": 4,
	"rate_limits": {"rpm": 300},
}

local_node := {
	"node_id": "lab-gpu-01",
	"labels": ["local", "gpu", "ollama"],
	"inference_mode": "ollama_local",
	"supported_providers": [],
}

decide(subject) := d if {
	d := register.decision with input as {"action": "register", "subject": subject}
}

test_seed_example_cloud_worker_admitted if {
	decide(cloud_worker) == {"allow": true, "reasons": []}
}

test_local_node_without_region_admitted if {
	decide(local_node) == {"allow": true, "reasons": []}
}

test_local_node_with_local_region_admitted if {
	decide(object.union(local_node, {"region": "onprem"})).allow
}

test_empty_input_denied if {
	decide({}) == {"allow": false, "reasons": ["context_missing"]}
}

test_no_input_denied if {
	not register.allow with input as {}
}

test_missing_node_id_denied if {
	d := decide(object.remove(cloud_worker, ["node_id"]))
	not d.allow
	"context_missing" in d.reasons
}

test_empty_node_id_denied if {
	d := decide(object.union(cloud_worker, {"node_id": ""}))
	not d.allow
	"context_missing" in d.reasons
}

test_labels_not_a_list_denied if {
	d := decide(object.union(cloud_worker, {"labels": "cloud"}))
	not d.allow
	"context_missing" in d.reasons
}

test_blocked_node_denied if {
	d := decide(object.union(cloud_worker, {"node_id": "cloud-quarantined-01"}))
	d == {"allow": false, "reasons": ["node_blocked"]}
}

test_unknown_label_denied if {
	d := decide(object.union(cloud_worker, {"labels": ["cloud", "root_access"]}))
	d.reasons == ["label_not_allowed"]
	not d.allow
}

test_cloud_worker_without_region_denied if {
	d := decide(object.remove(cloud_worker, ["region"]))
	d == {"allow": false, "reasons": ["region_required"]}
}

test_cloud_worker_in_unlisted_region_denied if {
	d := decide(object.union(cloud_worker, {"region": "ap-south-1"}))
	d == {"allow": false, "reasons": ["region_not_allowed"]}
}

test_local_region_not_valid_for_cloud if {
	d := decide(object.union(cloud_worker, {"region": "onprem"}))
	"region_not_allowed" in d.reasons
}

test_cloud_worker_cannot_run_ollama_local if {
	d := decide(object.union(cloud_worker, {"inference_mode": "ollama_local"}))
	d == {"allow": false, "reasons": ["inference_mode_not_allowed"]}
}

test_local_node_cannot_claim_provider_api if {
	d := decide(object.union(local_node, {"inference_mode": "provider_api"}))
	d == {"allow": false, "reasons": ["inference_mode_not_allowed"]}
}

test_unknown_model_provider_denied if {
	d := decide(object.union(cloud_worker, {"supported_providers": ["openai", "shadyai"]}))
	d == {"allow": false, "reasons": ["provider_not_allowed"]}
}

test_unlisted_cloud_denied if {
	d := decide(object.union(cloud_worker, {"provider": "mystery-cloud"}))
	d == {"allow": false, "reasons": ["cloud_provider_not_allowed"]}
}

test_cloud_worker_without_cloud_provider_admitted_by_default if {
	decide(object.remove(cloud_worker, ["provider"])) == {"allow": true, "reasons": []}
}

test_cloud_worker_without_cloud_provider_denied_when_required if {
	no_provider := object.remove(cloud_worker, ["provider"])
	d := decide(no_provider) with data.config.register.admission.require_cloud_provider as true
	d == {"allow": false, "reasons": ["cloud_provider_required"]}
}

test_all_reasons_reported_sorted if {
	d := decide({
		"node_id": "cloud-quarantined-01",
		"labels": ["cloud", "root_access"],
		"provider": "mystery-cloud",
		"inference_mode": "ollama_local",
		"supported_providers": ["shadyai"],
	})
	d.allow == false
	d.reasons == [
		"cloud_provider_not_allowed",
		"inference_mode_not_allowed",
		"label_not_allowed",
		"node_blocked",
		"provider_not_allowed",
		"region_required",
	]
}

test_allowlists_come_from_data if {
	d := register.decision with input as {"subject": cloud_worker}
		with data.config.register.admission.regions.cloud as {"eu-west-1": true}
	d.reasons == ["region_not_allowed"]
}
