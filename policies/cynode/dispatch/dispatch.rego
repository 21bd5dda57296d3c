# METADATA
# title: Job dispatch
# description: |
#   Decides whether one job may be leased by one worker, and scores the match. Default deny:
#   a job is leased only when the input is complete and the worker meets every requirement of
#   the job, the user's effective preferences and the limits in data.config.dispatch
#   (policies/config/dispatch/data.yaml), which also weights the score.
#   data.runtime.settings["cloud_routing.enabled"] switched to false keeps every job off
#   cloud workers (the kill switch).
package cynode.dispatch

import data.config.dispatch
import data.cynode.lib

# METADATA
# title: decision
# description: The dispatch decision, {allow, reasons, score}; deny reasons override any allow, a denied job scores 0.
# entrypoint: true
decision := {"allow": allow, "reasons": sort(deny), "score": score}

default allow := false

# A job is leased only with a complete input and no deny reason at all.
allow if {
	context_complete
	count(deny) == 0
}

default score := 0

# Higher is better: the preferred node, the user's provider and local nodes (burst to cloud)
# come first, a busy worker comes later, and the job's own priority is added on top. The
# weights are data.config.dispatch.score_weights.
score := s if {
	allow
	bonus := (preferred_bonus + provider_bonus) + local_bonus
	s := ((weights.base + bonus) - load_penalty) + priority
}

weights := dispatch.score_weights

subject := input.subject

resource := input.resource

requirements := resource.requirements

preferences := input.context.preferences

load := input.context.load

context_complete if {
	lib.non_empty_string(subject.node_id)
	is_array(subject.labels)
	is_string(subject.inference_mode)
	is_array(subject.supported_providers)
	is_string(resource.job_id)
	is_object(requirements)
	is_object(preferences)
	is_object(load)
}

node_class := lib.node_class(subject.labels)

worker_region := subject.region if is_string(subject.region)

in_required_region if worker_region in requirements.regions

in_preferred_region if worker_region in preferences.regions

in_cloud_region if dispatch.cloud_regions[worker_region]

# The worker has room only when the load is reported in numbers and is below its limit.
has_capacity if {
	is_number(load.active_jobs)
	is_number(load.max_concurrency)
	load.active_jobs < load.max_concurrency
}

# The user's override of the external provider, when one is set.
provider_override := preferences.provider if lib.non_empty_string(preferences.provider)

preferred_node := resource.preferred_node_id if lib.non_empty_string(resource.preferred_node_id)

# A job with no reported wait has not waited yet; no preference means no wait.
default waited_ms := 0

waited_ms := input.context.locality.waited_ms if is_number(input.context.locality.waited_ms)

default locality_max_wait_ms := 0

locality_max_wait_ms := preferences.locality_max_wait_ms if is_number(preferences.locality_max_wait_ms)

estimated_cost := resource.estimated_cost_usd if is_number(resource.estimated_cost_usd)

cloud_allowed_by_preferences if preferences.cloud_allowed == true

cloud_allowed_by_policy if dispatch.cloud.allowed == true

deny contains "context_missing" if not context_complete

deny contains "label_missing" if {
	some label in requirements.labels
	not label in subject.labels
}

deny contains "provider_not_supported" if {
	some provider in requirements.providers
	not provider in subject.supported_providers
}

# A worker that lists no models serves any model of its providers.
deny contains "model_not_supported" if {
	is_array(subject.supported_models)
	count(subject.supported_models) > 0
	some model in requirements.models
	not model in subject.supported_models
}

deny contains "inference_mode_mismatch" if {
	is_string(requirements.inference_mode)
	requirements.inference_mode != subject.inference_mode
}

deny contains "region_not_allowed" if {
	is_array(requirements.regions)
	count(requirements.regions) > 0
	not in_required_region
}

deny contains "region_not_allowed" if {
	is_array(preferences.regions)
	count(preferences.regions) > 0
	not in_preferred_region
}

deny contains "region_not_allowed" if {
	node_class == "cloud"
	not in_cloud_region
}

deny contains "worker_at_capacity" if {
	is_object(load)
	not has_capacity
}

# A job meant for another node waits for it up to the user's locality_max_wait_ms.
deny contains "locality_wait" if {
	preferred_node != subject.node_id
	waited_ms < locality_max_wait_ms
}

deny contains "provider_override_unmet" if {
	is_string(provider_override)
	not provider_override in subject.supported_providers
}

deny contains "provider_not_allowed" if {
	some provider in requirements.providers
	not dispatch.providers[provider]
}

deny contains "provider_not_allowed" if {
	is_string(provider_override)
	not dispatch.providers[provider_override]
}

deny contains "cost_limit_exceeded" if lib.over_limit(estimated_cost, preferences.max_cost_usd)

deny contains "cost_limit_exceeded" if lib.over_limit(estimated_cost, dispatch.max_cost_usd_per_job)

deny contains "budget_exceeded" if lib.over_limit(estimated_cost, resource.budget_usd)

deny contains "cloud_routing_disabled" if {
	node_class == "cloud"
	lib.cloud_routing_disabled
}

deny contains "cloud_not_allowed_by_preferences" if {
	node_class == "cloud"
	not cloud_allowed_by_preferences
}

deny contains "cloud_not_allowed_by_policy" if {
	node_class == "cloud"
	not cloud_allowed_by_policy
}

default preferred_bonus := 0

preferred_bonus := weights.preferred_node if resource.preferred_node_id == subject.node_id

default provider_bonus := 0

provider_bonus := weights.provider_override if provider_override in subject.supported_providers

default local_bonus := 0

local_bonus := weights.local_node if node_class == "local"

default load_penalty := 0

load_penalty := (weights.load * load.active_jobs) / load.max_concurrency if {
	is_number(load.active_jobs)
	is_number(load.max_concurrency)
	load.max_concurrency > 0
}

default priority := 0

priority := resource.priority if is_number(resource.priority)
