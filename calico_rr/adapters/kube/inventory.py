"""What ``calico-rr doctor`` reads: a resource dump or a live cluster -> Inventory.

Both sources end in the same pure function,
:func:`calico_rr.core.doctor.inventory.inventory_from_documents`: the live loader LISTs the
objects a ``kubectl get nodes,ippools,bgpconfigurations,bgppeers,... -A -o yaml``
dump would hold and hands them over as one ``List``, so a cluster and its dump give
the same findings.
"""

from __future__ import annotations

from typing import Any

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError
from calico_rr.adapters.kube.live import calico_group
from calico_rr.adapters.nodes_io import read_documents
from calico_rr.core.doctor.inventory import TYPHA_NAME, Inventory, inventory_from_documents
from calico_rr.errors import DatastoreError

#: Calico resources the doctor reads, by plural (the kinds of the dump).
CALICO_PLURALS = ("bgpconfigurations", "bgppeers", "ippools")


def load_dump(path: str) -> Inventory:
    """A file (``-`` = stdin) as written by ``kubectl get ... -o yaml`` (or ``-o json``)."""
    where = "standard input" if path == "-" else path
    return inventory_from_documents(read_documents(path), where=where)


def live_documents(client: KubeClient) -> list[dict[str, Any]]:
    """One ``List`` of Nodes, the Calico BGP objects and IPPools (in the API group
    Calico itself would use), ClusterInformation ``default`` (which release reads
    them, ``core.bgp.calico_version.reading_release``) and every ``calico-typha``
    Deployment."""
    try:
        group = calico_group(client)
        items: list[dict[str, Any]] = []
        nodes, _ = client.list(api_path("v1", "nodes"))
        items.extend(nodes)
        for plural in CALICO_PLURALS:
            objs, _ = client.list(api_path(group, plural))
            items.extend(objs)
        info = _cluster_information(client, group)
        if info is not None:
            items.append(info)
        deployments, _ = client.list(
            api_path("apps/v1", "deployments"), field_selector=f"metadata.name={TYPHA_NAME}"
        )
        items.extend(deployments)
    except ApiError as exc:
        raise DatastoreError(f"cannot read the cluster: {exc}") from None
    return [{"apiVersion": "v1", "kind": "List", "items": items}]


def _cluster_information(client: KubeClient, group: str) -> dict[str, Any] | None:
    """ClusterInformation ``default``, where calico-node records its release; None
    when absent or not readable with these credentials (it only refines the reading:
    a role without it still gets every check)."""
    try:
        return client.get(api_path(group, "clusterinformations", "default"))
    except ApiError as exc:
        if exc.status == 403:
            return None
        raise


def load_live(client: KubeClient) -> Inventory:
    return inventory_from_documents(live_documents(client), where="cluster")
