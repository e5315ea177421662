"""What ``calico-rr doctor`` reads from Calico's etcd datastore -> Inventory.

The same pure function as for a dump or a live Kubernetes cluster
(:func:`calico_rr.core.doctor.inventory.inventory_from_documents`) gets the Calico v3 documents
a ``calicoctl get nodes,bgpconfigurations,bgppeers,ippools -o yaml`` would print,
read straight from their keys, and ClusterInformation ``default``, where
calico-node records its release (which release reads the rest:
``core.bgp.calico_version``), as the live Kubernetes doctor reads it.  Typha does
not exist on etcd clusters, so its checks stay silent (the inventory holds Calico
Nodes, not Kubernetes Nodes).
"""

from __future__ import annotations

from typing import Any, Final

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.core.doctor.inventory import Inventory, inventory_from_documents
from calico_rr.core.formats import etcd as L

#: The Calico kinds the doctor uses, by their etcd directory.
DOCTOR_PLURALS: Final = ("nodes", "bgpconfigurations", "bgppeers", "ippools")
#: The one ClusterInformation Calico keeps (libcalico-go's key for the cluster-scoped
#: ``default``).
CLUSTER_INFORMATION_KEY: Final = f"{L.RESOURCE_ROOT}clusterinformations/default"


def etcd_documents(client: EtcdClient) -> list[dict[str, Any]]:
    """One ``List`` of every document under the :data:`DOCTOR_PLURALS` directories
    and ClusterInformation ``default`` when present, each checked against its key (a
    malformed one is an InputError naming the key)."""
    kvs = [kv for plural in DOCTOR_PLURALS for kv in client.list(f"{L.RESOURCE_ROOT}{plural}/").kvs]
    info = client.get(CLUSTER_INFORMATION_KEY)
    if info is not None:
        kvs.append(info)
    items = [L.decode_document(kv.key, kv.value, kv.mod_revision) for kv in kvs]
    return [{"apiVersion": "v1", "kind": "List", "items": items}]


def load_etcd(client: EtcdClient) -> Inventory:
    return inventory_from_documents(etcd_documents(client), where="etcd")
