"""Datastore documents <-> the model: Kubernetes Nodes (kube), Calico v3 documents
as the etcd datastore holds them (etcd, and its Calico Nodes: etcd_nodes), and
what every reader of documents shares (fields: positions, maps; scalars: IPv4
addresses, RFC 3339 timestamps)."""
