"""Local parts `demo`, `lab` and the tests start: a real kube-apiserver + etcd
(controlplane, manifests), a real etcd with TLS (etcd) and the lab's BIRD tools
(lab_tools); what the servers share is in process (binaries, local processes) and
pki (certificates).  Product code: the package's own commands run them
(docs/CONTROLPLANE.md)."""

from calico_rr.sandbox.controlplane import ControlPlane, apply_crds, request

__all__ = ["ControlPlane", "apply_crds", "request"]
