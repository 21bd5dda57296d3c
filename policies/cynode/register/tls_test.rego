package cynode.register_test

tls_worker := object.union(cloud_worker, {"tls": {
	"common_name": "cloud-us-east-1-01",
	"subject": {"CN": "cloud-us-east-1-01", "O": "fleet-a"},
	"issuer": {"CN": "fleet-a CA"},
	"dns_names": [],
	"uris": [],
	"ip_addresses": [],
	"emails": [],
	"serial_number": "01",
	"fingerprint_sha256": "AA:BB",
	"not_after": "2027-01-01T00:00:00.000Z",
}})

test_tls_binding_off_by_default_admits_without_cert if {
	decide(cloud_worker) == {"allow": true, "reasons": []}
}

test_tls_binding_off_admits_any_cert if {
	subject := object.union(tls_worker, {"tls": {"common_name": "someone-else", "dns_names": []}})
	decide(subject) == {"allow": true, "reasons": []}
}

test_tls_binding_common_name_admitted if {
	d := decide(tls_worker) with data.config.register.tls.require_client_cert_binding as true
	d == {"allow": true, "reasons": []}
}

test_tls_binding_dns_name_admitted if {
	names := {"common_name": "fleet-a", "dns_names": ["other", "cloud-us-east-1-01"]}
	subject := object.union(tls_worker, {"tls": names})
	d := decide(subject) with data.config.register.tls.require_client_cert_binding as true
	d == {"allow": true, "reasons": []}
}

test_tls_binding_mismatch_denied if {
	names := {"common_name": "cloud-us-east-1-02", "dns_names": ["cloud-us-east-1-03"]}
	subject := object.union(tls_worker, {"tls": names})
	d := decide(subject) with data.config.register.tls.require_client_cert_binding as true
	d == {"allow": false, "reasons": ["tls_identity_mismatch"]}
}

test_tls_binding_without_common_name_denied if {
	subject := object.union(tls_worker, {"tls": {"common_name": null, "dns_names": []}})
	d := decide(subject) with data.config.register.tls.require_client_cert_binding as true
	d == {"allow": false, "reasons": ["tls_identity_mismatch"]}
}

test_tls_binding_without_cert_denied if {
	d := decide(cloud_worker) with data.config.register.tls.require_client_cert_binding as true
	d == {"allow": false, "reasons": ["client_cert_required"]}
}
