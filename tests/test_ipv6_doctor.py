"""Doctor's address-family checks (issue 17): IPv6 IPPools, nodes missing an IPv6
address in a dual-stack cluster, the mesh size per family."""

from __future__ import annotations

from typing import Any

from calico_rr.core.doctor.checks import diagnose
from calico_rr.core.doctor.findings import Finding, Severity
from calico_rr.core.doctor.inventory import inventory_from_documents
from calico_rr.model import ANN_IPV4, ANN_IPV6


def k8s_node(i: int) -> dict[str, Any]:
    ann = {ANN_IPV4: f"10.0.{i}.1/16"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"n{i:04d}", "annotations": ann},
    }


def dual_node(i: int, ipv6: bool = True) -> dict[str, Any]:
    node = k8s_node(i)
    if ipv6:
        node["metadata"]["annotations"][ANN_IPV6] = f"fd00::{i + 1:x}/64"
    return node


def bgpconfig(mesh: bool) -> dict[str, Any]:
    spec = {"nodeToNodeMeshEnabled": mesh}
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": spec,
    }


def ippool(name: str = "pool", cidr: str = "192.168.0.0/16") -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr},
    }


def findings(*parts: list[dict[str, Any]] | dict[str, Any]) -> list[Finding]:
    items: list[dict[str, Any]] = []
    for part in parts:
        items.extend(part if isinstance(part, list) else [part])
    return diagnose(
        inventory_from_documents([{"apiVersion": "v1", "kind": "List", "items": items}])
    )


def of(found: list[Finding], check: str) -> list[Finding]:
    return [f for f in found if f.id == check]


def test_dual_stack_gap_names_the_nodes_and_the_mesh_per_family() -> None:
    nodes = [dual_node(i, ipv6=i not in (2, 5)) for i in range(8)]
    found = findings(nodes, bgpconfig(True), ippool(), ippool("v6", cidr="fd00:10::/64"))
    (gap,) = of(found, "dual-stack-gap")
    assert gap.severity is Severity.WARNING
    assert gap.object == "Node/n0002 (+1 more)"
    assert "2 of 8 BGP nodes have no IPv6 address (n0002, n0005)" in gap.message
    (mesh,) = of(found, "mesh-per-family")
    assert "IPv4: 8 nodes, 28 sessions; IPv6: 6 nodes, 15 sessions" in mesh.message
    assert not of(found, "family-unrouted")


def test_ipv6_pool_without_any_ipv6_node() -> None:
    found = findings([k8s_node(i) for i in range(4)], ippool("v6", cidr="fd00:10::/64"))
    (unrouted,) = of(found, "family-unrouted")
    assert unrouted.object == "IPPool/v6" and "no BGP node has an IPv6 address" in unrouted.message
    assert not of(found, "dual-stack-gap")


def test_ipv4_only_cluster_gets_no_family_finding() -> None:
    found = findings([k8s_node(i) for i in range(4)], bgpconfig(True), ippool())
    for check in ("dual-stack-gap", "family-unrouted", "mesh-per-family"):
        assert not of(found, check)


def test_ipv6_only_cluster_mesh_is_measured() -> None:
    nodes = [dual_node(i) for i in range(120)]
    for node in nodes:
        del node["metadata"]["annotations"]["projectcalico.org/IPv4Address"]
    found = findings(nodes, bgpconfig(True), ippool("v6", cidr="fd00:10::/64"))
    assert of(found, "mesh-at-scale")  # the IPv6 mesh, measured like the IPv4 one
    assert not of(found, "dual-stack-gap") and not of(found, "family-unrouted")
