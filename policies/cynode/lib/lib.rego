# METADATA
# title: Shared policy rules
# description: |
#   Rules several cynode policies apply the same way: a worker's node class, the runtime
#   kill switch, and the checks on strings and numbers from the input. Not an entrypoint:
#   the decision packages import it, so each rule has one definition and one test.
package cynode.lib

import data.runtime.settings

# A worker is a cloud worker when it says so with the `cloud` label, else a local node;
# undefined when the labels are not an array (the policy's completeness check denies then).
node_class(labels) := "cloud" if "cloud" in labels

node_class(labels) := "local" if {
	is_array(labels)
	not "cloud" in labels
}

# The kill switch: cloud routing is off only on an explicit false in
# data.runtime.settings["cloud_routing.enabled"]; an unset setting leaves it on.
cloud_routing_disabled if settings["cloud_routing.enabled"] == false

# Whether a value is a string with at least one character (ids, overrides).
non_empty_string(value) if {
	is_string(value)
	value != ""
}

# Whether an amount exceeds a limit, both numbers. Rego orders values of different types,
# so a string amount would otherwise compare greater than any limit, and a null limit
# smaller than any amount.
over_limit(amount, limit) if {
	is_number(amount)
	is_number(limit)
	amount > limit
}
