"""Datastore documents <-> the model: Kubernetes objects (kube) and Calico v3
documents as the etcd datastore holds them (etcd)."""
