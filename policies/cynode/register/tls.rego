# Node admission by client certificate: binds node ids to client certificates. When the control plane verifies a client
# certificate (mutual TLS, server.tls.clientCaFile), its identity reaches this policy as
# input.subject.tls. With data.config.register.tls.require_client_cert_binding true, a
# node registers only over a verified certificate whose common name or one of whose DNS
# subject alternative names is its node id.
package cynode.register

import data.config.register.tls as tls_config

binding_required if tls_config.require_client_cert_binding == true

has_client_cert if is_object(subject.tls)

# The node id is the certificate's common name ...
node_id_in_cert if subject.tls.common_name == subject.node_id

# ... or one of its DNS subject alternative names.
node_id_in_cert if subject.node_id in subject.tls.dns_names

deny contains "client_cert_required" if {
	binding_required
	not has_client_cert
}

deny contains "tls_identity_mismatch" if {
	binding_required
	has_client_cert
	not node_id_in_cert
}
