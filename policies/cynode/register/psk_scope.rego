# PSK scope: a scoped PSK registers only the nodes its constraints allow (input.subject.psk.constraints,
# set by POST /v1/psks): node ids matching node_id_pattern (a glob, or a regex anchored
# with ^...$), labels from allowed_labels, regions from regions. An absent constraint, or
# an unscoped PSK, constrains nothing; a report through no PSK at all (a heartbeat of a node
# whose key is gone) is held to nothing here.
package cynode.register

psk_constraints := input.subject.psk.constraints

# A pattern starting with ^ is a regular expression (validated anchored when the PSK was made); anything else a glob.
node_id_in_scope(pattern, node_id) if {
	startswith(pattern, "^")
	regex.match(pattern, node_id)
}

node_id_in_scope(pattern, node_id) if {
	not startswith(pattern, "^")
	glob.match(pattern, [], node_id)
}

deny contains "psk_scope_node_id" if {
	is_string(psk_constraints.node_id_pattern)
	not node_id_in_scope(psk_constraints.node_id_pattern, subject.node_id)
}

deny contains "psk_scope_label" if {
	is_array(psk_constraints.allowed_labels)
	some label in subject.labels
	not label in psk_constraints.allowed_labels
}

# A node that reports no region is outside every region list.
deny contains "psk_scope_region" if {
	is_array(psk_constraints.regions)
	not region_in_scope
}

region_in_scope if subject.region in psk_constraints.regions
