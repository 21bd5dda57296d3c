package cynode.register_test

import data.cynode.register

fleet_a_worker := object.union(cloud_worker, {"node_id": "fleet-a-01", "labels": ["cloud"], "region": "us-east-1"})

scoped(constraints) := {"id": "abcdefabcdef", "name": "fleet-a", "constraints": constraints}

decide_with_psk(report, constraints) := d if {
	subject := object.union(report, {"psk": scoped(constraints)})
	d := register.decision with input as {"action": "register", "subject": subject}
}

fleet_a_scope := {
	"node_id_pattern": "fleet-a-*",
	"allowed_labels": ["cloud", "provider_openai"],
	"regions": ["us-east-1"],
}

test_scoped_psk_registers_its_own_fleet if {
	decide_with_psk(fleet_a_worker, fleet_a_scope) == {"allow": true, "reasons": []}
}

test_unscoped_psk_registers_any_node if {
	decide_with_psk(fleet_a_worker, null) == {"allow": true, "reasons": []}
}

test_no_psk_in_input_constrains_nothing if {
	decide(fleet_a_worker).allow
}

test_other_fleets_node_id_denied if {
	d := decide_with_psk(object.union(fleet_a_worker, {"node_id": "fleet-b-01"}), fleet_a_scope)
	d == {"allow": false, "reasons": ["psk_scope_node_id"]}
}

test_regex_pattern_matches if {
	decide_with_psk(fleet_a_worker, {"node_id_pattern": "^fleet-a-[0-9]+$"}).allow
}

test_regex_pattern_is_anchored if {
	d := decide_with_psk(object.union(fleet_a_worker, {"node_id": "fleet-a-01x"}), {"node_id_pattern": "^fleet-a-[0-9]+$"})
	d.reasons == ["psk_scope_node_id"]
}

test_label_outside_scope_denied if {
	d := decide_with_psk(object.union(fleet_a_worker, {"labels": ["cloud", "gpu"]}), fleet_a_scope)
	d.reasons == ["psk_scope_label"]
}

test_region_outside_scope_denied if {
	d := decide_with_psk(object.union(fleet_a_worker, {"region": "eu-west-1"}), fleet_a_scope)
	d.reasons == ["psk_scope_region"]
}

test_missing_region_outside_scope_denied if {
	local := object.union(local_node, {"node_id": "fleet-a-02", "labels": ["local"]})
	d := decide_with_psk(local, {"regions": ["onprem"]})
	d.reasons == ["psk_scope_region"]
}

test_every_scope_reason_at_once if {
	report := object.union(fleet_a_worker, {"node_id": "fleet-b-01", "labels": ["cloud", "gpu"], "region": "eu-west-1"})
	d := decide_with_psk(report, fleet_a_scope)
	d.reasons == ["psk_scope_label", "psk_scope_node_id", "psk_scope_region"]
}
