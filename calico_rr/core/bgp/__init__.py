"""The BGP side: Calico resources read as calico-node reads them (documents,
resources, calico_fields, selector, calico_version), the session graph BIRD would
run (sessions, twins), its figures (metrics) and the verifier (verify)."""
