"""Adapters: everything that touches the outside world (files, stdin, later Kubernetes,
etcd and BIRD).  They turn it into plain data for ``calico_rr.core`` and back."""
