package cynode.lib_test

import data.cynode.lib

test_cloud_label_makes_a_cloud_worker if {
	lib.node_class(["cloud", "provider_openai"]) == "cloud"
	lib.node_class(["provider_openai", "cloud"]) == "cloud"
}

test_no_cloud_label_makes_a_local_node if {
	lib.node_class(["local", "gpu"]) == "local"
	lib.node_class([]) == "local"
}

test_labels_not_an_array_have_no_class if {
	not lib.node_class("cloud")
	not lib.node_class(null)
	not lib.node_class({"local": true})
}

test_only_an_explicit_false_disables_cloud_routing if {
	lib.cloud_routing_disabled with data.runtime.settings as {"cloud_routing.enabled": false}
	not lib.cloud_routing_disabled with data.runtime.settings as {"cloud_routing.enabled": true}
	not lib.cloud_routing_disabled with data.runtime.settings as {"cloud_routing.enabled": "false"}
	not lib.cloud_routing_disabled with data.runtime.settings as {}
}

test_non_empty_string if {
	lib.non_empty_string("node-1")
	lib.non_empty_string(" ")
	not lib.non_empty_string("")
	not lib.non_empty_string(null)
	not lib.non_empty_string(1)
	not lib.non_empty_string(["node-1"])
}

test_over_limit_compares_numbers_only if {
	lib.over_limit(2.5, 2)
	not lib.over_limit(2, 2)
	not lib.over_limit(1, 2)
	not lib.over_limit("3", 2)
	not lib.over_limit(3, null)
	not lib.over_limit(null, 0)
}
