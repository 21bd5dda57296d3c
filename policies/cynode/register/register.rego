# METADATA
# title: Node admission
# description: |
#   Decides whether a node (local or cloud worker) may register with the capability report
#   it presents. Default deny: a node is admitted only when its report is complete and
#   every label, region, inference mode and provider it claims is on the allowlists in
#   data.config.register.admission (policies/config/register/data.yaml).
package cynode.register

import data.config.register.admission
import data.cynode.lib

# METADATA
# title: decision
# description: The admission decision, {allow, reasons}; deny reasons override any allow.
# entrypoint: true
decision := {"allow": allow, "reasons": sort(deny)}

default allow := false

# A node is admitted only with a complete report and no deny reason at all.
allow if {
	report_complete
	count(deny) == 0
}

subject := input.subject

report_complete if {
	lib.non_empty_string(subject.node_id)
	is_array(subject.labels)
	is_string(subject.inference_mode)
	is_array(subject.supported_providers)
}

has_region if is_string(subject.region)

node_class := lib.node_class(subject.labels)

deny contains "context_missing" if not report_complete

deny contains "node_blocked" if admission.blocked_nodes[subject.node_id]

deny contains "label_not_allowed" if {
	some label in subject.labels
	not admission.labels[label]
}

deny contains "region_required" if {
	node_class == "cloud"
	not has_region
}

deny contains "region_not_allowed" if {
	is_string(subject.region)
	not admission.regions[node_class][subject.region]
}

deny contains "inference_mode_not_allowed" if {
	is_string(subject.inference_mode)
	not admission.inference_modes[node_class][subject.inference_mode]
}

deny contains "provider_not_allowed" if {
	some provider in subject.supported_providers
	not admission.providers[provider]
}

# The cloud a cloud worker says it runs on must be allowed. The README's Example 1 worker
# does not name one (CYNODE_CAP_PROVIDER is optional), so an absent provider is admitted
# unless the allowlists require one (admission.require_cloud_provider).
deny contains "cloud_provider_not_allowed" if {
	node_class == "cloud"
	has_provider
	not admission.cloud_providers[subject.provider]
}

deny contains "cloud_provider_required" if {
	node_class == "cloud"
	admission.require_cloud_provider == true
	not has_provider
}

has_provider if is_string(subject.provider)
