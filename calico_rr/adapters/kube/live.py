"""A live cluster read once for the CLI: ``plan``/``render``/``verify --kubeconfig``
and ``calico-rr diff`` (docs/OPERATIONS.md).

The operator reads the same objects through informers (kube/operator.py); here each
is one LIST, and :func:`observed` builds from them the very
:class:`~calico_rr.core.operator.state.Observed` the operator's store would hand its
reconcile, so ``diff`` plans exactly as the operator does.  :func:`dry_run` sends the
writes of a preview with ``dryRun=All``: the API server validates and admits them
(schemas, RBAC, field ownership) and stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from calico_rr.adapters.kube.api import APPLY_PATCH, api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError
from calico_rr.adapters.kube.operator import MANAGED_SELECTOR, choose_api_group, node_state
from calico_rr.adapters.kube.ports import CONFIG_API, node_bgp_status
from calico_rr.core import operator as core
from calico_rr.core.formats.kube import nodes_from_documents
from calico_rr.core.operator.preview import Preview
from calico_rr.core.operator.settings import CONFIG_NAME, CRD_PLURAL
from calico_rr.core.planning.config import ApiGroup
from calico_rr.errors import InputError
from calico_rr.model import Node

#: The operator's field manager: a dry run must meet the same ownership rules.
FIELD_MANAGER = "calico-rr"


def calico_group(client: KubeClient) -> ApiGroup:
    """The Calico API group calico-node reads; InputError when none is served."""
    served = client.served_groups()
    if "crd.projectcalico.org" not in served and "projectcalico.org" not in served:
        raise InputError(
            "the cluster serves no Calico API group (crd.projectcalico.org or "
            "projectcalico.org): is Calico installed?"
        )
    return choose_api_group(served)


def _cannot_read(exc: ApiError) -> InputError:
    return InputError(f"cannot read the cluster: {exc}")


def live_nodes(client: KubeClient) -> tuple[list[Node], list[str]]:
    """The cluster's Nodes as a NodeList file of them would give them (plan, render)."""
    try:
        items, _ = client.list(api_path("v1", "nodes"))
    except ApiError as exc:
        raise _cannot_read(exc) from None
    return nodes_from_documents([{"kind": "List", "items": items}], where="cluster")


def verify_documents(client: KubeClient) -> list[dict[str, Any]]:
    """Nodes, BGPPeers and BGPConfigurations in the API group calico-node reads, as
    ``kubectl get nodes,bgppeers,bgpconfigurations -o yaml`` would list them."""
    try:
        group = calico_group(client)
        items: list[dict[str, Any]] = []
        for version, plural in (("v1", "nodes"), (group, "bgppeers"), (group, "bgpconfigurations")):
            objs, _ = client.list(api_path(version, plural))
            items.extend(objs)
    except ApiError as exc:
        raise _cannot_read(exc) from None
    return [{"apiVersion": "v1", "kind": "List", "items": items}]


@dataclass(frozen=True)
class LiveCluster:
    """What the operator's caches would hold, read once."""

    api_group: ApiGroup
    nodes: list[dict[str, Any]]
    peers: list[dict[str, Any]]
    bgp_config: dict[str, Any] | None
    #: the RouteReflectorConfig ``default`` (None: absent, or its CRD is not installed)
    config: dict[str, Any] | None
    node_statuses: list[dict[str, Any]]
    node_status_supported: bool


def read_cluster(client: KubeClient) -> LiveCluster:
    """One LIST per kind the operator watches (kube/operator.py ``_start_informers``)."""
    try:
        group = calico_group(client)
        resources = client.request("GET", "/apis/" + group)
        names = {r.get("name") for r in (resources or {}).get("resources") or []}
        cns_supported = "caliconodestatuses" in names
        nodes, _ = client.list(api_path("v1", "nodes"))
        peers, _ = client.list(api_path(group, "bgppeers"), label_selector=MANAGED_SELECTOR)
        bgp_config = client.get(api_path(group, "bgpconfigurations", "default"))
        statuses: list[dict[str, Any]] = []
        if cns_supported:
            statuses, _ = client.list(
                api_path(group, "caliconodestatuses"), label_selector=MANAGED_SELECTOR
            )
        config = None
        if "calico-rr.io" in client.served_groups():
            config = client.get(api_path(CONFIG_API, CRD_PLURAL, CONFIG_NAME))
    except ApiError as exc:
        raise _cannot_read(exc) from None
    return LiveCluster(group, nodes, peers, bgp_config, config, statuses, cns_supported)


def observed(live: LiveCluster, *, now: float) -> core.Observed:
    """The cluster as the operator's reconcile sees it (kube/ports.py ``KubeStore``)."""
    mesh = ((live.bgp_config or {}).get("spec") or {}).get("nodeToNodeMeshEnabled")
    transition = ((live.config or {}).get("status") or {}).get("transition")
    states = (node_state(obj, FIELD_MANAGER) for obj in live.nodes)
    return core.Observed(
        nodes={ns.node.name: ns for ns in states},
        peers={str(p["metadata"]["name"]): p for p in live.peers},
        mesh_enabled=mesh is not False,
        transition=transition if isinstance(transition, Mapping) else None,
        node_status=dict(node_bgp_status(obj) for obj in live.node_statuses),
        node_status_objects=frozenset(
            str(o["metadata"]["name"]) for o in live.node_statuses if "metadata" in o
        ),
        node_status_supported=live.node_status_supported,
        now=now,
    )


def _apply_dry(client: KubeClient, path: str, body: Mapping[str, Any], force: bool = False) -> None:
    params = {"fieldManager": FIELD_MANAGER, "dryRun": "All"}
    if force:
        params["force"] = "true"
    client.request("PATCH", path, params=params, body=dict(body), content_type=APPLY_PATCH)


def dry_run(client: KubeClient, live: LiveCluster, shown: Preview) -> list[str]:
    """Send the end state's writes with ``dryRun=All``: each node's fields, each
    BGPPeer created, changed or deleted, the mesh flag.  Returns the refusals (one
    line each; empty when the API server accepts every write).  The transient
    objects of the way there (companions, the bridge, CalicoNodeStatus requests) are
    not sent: they are the operator's own kinds, created and deleted the same way."""
    writes: list[tuple[str, Callable[[], object]]] = []
    uids = {str(o["metadata"]["name"]): o["metadata"].get("uid") for o in live.nodes}
    for change in shown.nodes:
        labels = {k: v for k, v in change.after.items() if not k.startswith("@")}
        ann = {k[1:]: v for k, v in change.after.items() if k.startswith("@")}
        body = core.NodeApply(change.name, labels, ann, uids.get(change.name)).body()
        path = api_path("v1", "nodes", change.name)
        writes.append((f"node {change.name}", partial(_apply_dry, client, path, body)))
    for peer in shown.peers:
        path = api_path(live.api_group, "bgppeers", peer.name)
        if peer.after is None:
            delete = partial(client.request, "DELETE", path, params={"dryRun": "All"})
            writes.append((f"delete bgppeer {peer.name}", delete))
        else:
            writes.append((f"bgppeer {peer.name}", partial(_apply_dry, client, path, peer.after)))
    if shown.mesh_before != shown.mesh_after:
        body = {
            "apiVersion": live.api_group,
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": shown.mesh_after},
        }
        path = api_path(live.api_group, "bgpconfigurations", "default")
        # forced, as the operator's own write: the mesh flag is the one field it takes over
        writes.append(("bgpconfiguration default", partial(_apply_dry, client, path, body, True)))
    refused: list[str] = []
    for what, call in writes:
        try:
            call()
        except ApiError as exc:
            refused.append(f"{what}: {exc}")
    return refused
