# METADATA
# title: API Egress calls
# description: |
#   Decides whether a subject (a worker for a job it leases, or the orchestrator routing
#   directly) may call one provider operation with one model, and with which rate limits.
#   Default deny: a call is allowed only with a complete input, a grant for the subject, a
#   region, cost and budget within limits, and cloud use allowed by policy, preferences and
#   the kill switch (data.runtime.settings["cloud_routing.enabled"]). Data lives in
#   data.config.api_call (policies/config/api_call/data.yaml).
package cynode.api_call

import data.config.api_call
import data.cynode.lib

# METADATA
# title: decision
# description: |
#   The api.call decision, {allow, reasons, limits}: deny reasons override any allow,
#   and limits are given on every decision.
# entrypoint: true
decision := {"allow": allow, "reasons": sort(deny), "limits": limits}

default allow := false

allow if {
	context_complete
	count(deny) == 0
}

subject := input.subject

resource := input.resource

ctx := input.context

preferences := ctx.preferences

context_complete if {
	subject.kind in {"worker", "orchestrator"}
	lib.non_empty_string(subject.id)
	is_array(subject.labels)
	is_string(resource.provider)
	is_string(resource.operation)
	is_string(resource.model)
	is_number(resource.estimated_cost_usd)
	lib.non_empty_string(ctx.task_id)
	is_object(preferences)
	is_object(ctx.requirements)
	is_object(ctx.budget)
	budgets_well_formed
}

# A budget is null (none set) or carries a number for what is left of it: a malformed one
# must not slip past the budget rules. `model` holds each scope's budget for the model called.
budget_scopes := ["task", "user", "group", "project", "subject"]

model_budgets := object.get(ctx.budget, "model", {})

budget_well_formed(null)

budget_well_formed(budget) if is_number(budget.remaining_usd)

budgets_well_formed if {
	is_object(model_budgets)
	every scope in budget_scopes {
		budget_well_formed(object.get(ctx.budget, scope, null))
		budget_well_formed(object.get(model_budgets, scope, null))
	}
}

# The worst case in numbers only: Rego orders values of different types, so a string
# estimate would otherwise compare "greater" than any limit.
estimated_cost := resource.estimated_cost_usd if is_number(resource.estimated_cost_usd)

# A helper rule, so that an absent `task` key denies too: `not is_object(x)` is undefined,
# not true, when x is missing.
has_task_budget if is_object(ctx.budget.task)

# The catalogue: what may be called at all.
catalogue := api_call.providers[resource.provider]

catalogue_operation := catalogue.operations[resource.operation]

# Grants: what this subject may call. A worker holds the grants of its labels and node id.
grants contains grant if {
	subject.kind == "worker"
	some label in subject.labels
	grant := api_call.grants.labels[label][resource.provider]
}

grants contains grant if {
	subject.kind == "worker"
	grant := api_call.grants.nodes[subject.id][resource.provider]
}

grants contains grant if {
	subject.kind == "orchestrator"
	grant := api_call.grants.orchestrator[resource.provider]
}

granted_operation if {
	some grant in grants
	grant[resource.operation]
}

granted_model if {
	some grant in grants
	grant[resource.operation].models[resource.model]
}

granted_model if {
	some grant in grants
	grant[resource.operation].models["*"]
}

# A worker answers only for what it reported it can do.
provider_supported if resource.provider in subject.supported_providers

model_supported if resource.model in subject.supported_models

origin := ctx.region if is_string(ctx.region)

# Each region rule is a rule of its own, so a missing origin fails it (and denies).
origin_allowed_by_provider if catalogue.regions[origin]

origin_preferred if origin in preferences.regions

origin_required if origin in ctx.requirements.regions

# Deny reasons, all of them here.
deny contains "context_missing" if not context_complete

deny contains "provider_not_allowed" if not catalogue

deny contains "operation_not_allowed" if {
	catalogue
	not catalogue_operation
}

deny contains "model_not_allowed" if {
	catalogue_operation
	not catalogue_operation.models[resource.model]
}

deny contains "provider_not_allowed" if count(grants) == 0

deny contains "operation_not_allowed" if {
	count(grants) > 0
	not granted_operation
}

deny contains "model_not_allowed" if {
	granted_operation
	not granted_model
}

deny contains "provider_not_supported" if {
	subject.kind == "worker"
	not provider_supported
}

deny contains "model_not_supported" if {
	subject.kind == "worker"
	is_array(subject.supported_models)
	count(subject.supported_models) > 0
	not model_supported
}

# The user's override of the provider.
deny contains "provider_override_unmet" if {
	lib.non_empty_string(preferences.provider)
	preferences.provider != resource.provider
}

deny contains "region_not_allowed" if {
	is_object(catalogue.regions)
	not origin_allowed_by_provider
}

deny contains "region_not_allowed" if {
	is_array(preferences.regions)
	count(preferences.regions) > 0
	not origin_preferred
}

deny contains "region_not_allowed" if {
	is_array(ctx.requirements.regions)
	count(ctx.requirements.regions) > 0
	not origin_required
}

# Every call leaves for an external provider: the kill switch stops them all (only an
# explicit false; an unset setting leaves cloud routing on).
deny contains "cloud_routing_disabled" if lib.cloud_routing_disabled

deny contains "cloud_not_allowed_by_preferences" if not preferences.cloud_allowed == true

deny contains "cloud_not_allowed_by_policy" if not api_call.cloud.allowed == true

deny contains "cost_limit_exceeded" if lib.over_limit(estimated_cost, preferences.max_cost_usd)

deny contains "cost_limit_exceeded" if lib.over_limit(estimated_cost, api_call.max_cost_usd_per_call)

deny contains "budget_missing" if {
	api_call.require_task_budget == true
	is_object(ctx.budget)
	not has_task_budget
}

deny contains "budget_exceeded" if {
	some scope in budget_scopes
	lib.over_limit(estimated_cost, ctx.budget[scope].remaining_usd)
}

deny contains "budget_exceeded" if {
	some scope in budget_scopes
	lib.over_limit(estimated_cost, model_budgets[scope].remaining_usd)
}

deny contains "subject_blocked" if api_call.blocked_subjects[subject.id]

# Rate limits the gateway enforces in PostgreSQL across replicas. Subject limits: the data
# default (or the orchestrator's), overridden per label and then per node id, lowered to what
# the worker itself declared. Credential limits: per provider, else the default.
# Without the data's limits (or with an incomplete subject) every limit is 0: nothing passes.
default subject_limits := {"rpm": 0, "tpm": 0}

subject_limits := api_call.rate_limits.subject.orchestrator if subject.kind == "orchestrator"

subject_limits := object.union_n([api_call.rate_limits.subject.default, label_limits, node_limits]) if {
	subject.kind == "worker"
}

default label_limits := {}

# The lowest limit of the subject's labels, per kind, among the labels that set one.
label_limits := {kind: min(values) |
	some kind in ["rpm", "tpm"]
	values := [v | some label in subject.labels; v := api_call.rate_limits.subject.labels[label][kind]]
	count(values) > 0
} if {
	is_array(subject.labels)
}

default node_limits := {}

node_limits := api_call.rate_limits.subject.nodes[subject.id]

declared(kind) := subject.rate_limits[kind] if {
	is_number(subject.rate_limits[kind])
	subject.rate_limits[kind] > 0
}

limit(kind) := min([subject_limits[kind], declared(kind)])

limit(kind) := subject_limits[kind] if not declared(kind)

default credential_limits := {"rpm": 0, "tpm": 0}

credential_limits := api_call.rate_limits.credential[resource.provider]

credential_limits := api_call.rate_limits.credential.default if not api_call.rate_limits.credential[resource.provider]

limits := {
	"subject": {"rpm": limit("rpm"), "tpm": limit("tpm")},
	"credential": {"rpm": credential_limits.rpm, "tpm": credential_limits.tpm},
}
