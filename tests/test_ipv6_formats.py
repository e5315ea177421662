"""IPv6 and dual-stack node addresses in every format (issue 17): Kubernetes Nodes
(annotation, InternalIP), Calico v3 Nodes of both API groups, etcd documents, and
their writers; malformed addresses give one clear InputError."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.formats.etcd_nodes import node_from_calico, node_to_calico
from calico_rr.core.formats.kube import node_from_k8s, node_to_k8s
from calico_rr.core.formats.scalars import parse_ipv6
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.errors import InputError
from calico_rr.model import ANN_IPV4, ANN_IPV6


def k8s_node(
    name: str = "n1", annotations: dict[str, str] | None = None, addresses: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": annotations or {}},
        "status": {"addresses": [{"type": "InternalIP", "address": a} for a in addresses]},
    }


def test_parse_ipv6_normalises_and_refuses() -> None:
    assert parse_ipv6("FD00:0:0::0005/64") == "fd00::5"
    assert parse_ipv6("2001:db8::1") == "2001:db8::1"
    for bad in ("10.0.0.1", "fd00::1/129", "fd00::1/", "fd00::g", "fe80::1%eth0", "::ffff:1.2.3.4"):
        assert parse_ipv6(bad) is None, bad


@given(st.ip_addresses(v=6))
def test_any_ipv6_spelling_reads_back_compressed(addr: ipaddress.IPv6Address) -> None:
    if addr.ipv4_mapped is not None:
        assert parse_ipv6(addr.exploded) is None
        return
    assert parse_ipv6(addr.exploded + "/64") == addr.compressed


def test_kubernetes_node_annotations_give_both_families() -> None:
    node = node_from_k8s(k8s_node(annotations={ANN_IPV4: "10.0.0.1/24", ANN_IPV6: "fd00:0::1/64"}))
    assert (node.ip, node.ip6) == ("10.0.0.1", "fd00::1")
    six = node_from_k8s(k8s_node(annotations={ANN_IPV6: "fd00::2/64"}))
    assert (six.ip, six.ip6, six.addressed) == (None, "fd00::2", True)


def test_internal_ips_of_both_families_without_annotations() -> None:
    node = node_from_k8s(k8s_node(addresses=("10.0.0.3", "FD00::3")))
    assert (node.ip, node.ip6) == ("10.0.0.3", "fd00::3")
    # the annotation wins over the InternalIP, as calico-node's address does
    annotated = node_from_k8s(
        k8s_node(annotations={ANN_IPV6: "fd00::9/64"}, addresses=("fd00::3",))
    )
    assert annotated.ip6 == "fd00::9"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (k8s_node(annotations={ANN_IPV6: "fd00::1/200"}), ANN_IPV6),
        (k8s_node(annotations={ANN_IPV6: "10.0.0.1/24"}), ANN_IPV6),
        (k8s_node(addresses=("fd00::zz",)), "status.addresses[0].address"),
    ],
)
def test_malformed_ipv6_is_one_clear_error(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as err:
        node_from_k8s(doc)
    text = str(err.value)
    assert "Node n1" in text and field in text and "\n" not in text


def test_kubernetes_writer_round_trips_both_families() -> None:
    for node in synthetic_cluster(3, ip_family="dual") + synthetic_cluster(2, ip_family="ipv6"):
        back = node_from_k8s(node_to_k8s(node))
        assert (back.ip, back.ip6) == (node.ip, node.ip6)


def calico_node(api: str, bgp: dict[str, Any], name: str = "n1") -> dict[str, Any]:
    return {"apiVersion": api, "kind": "Node", "metadata": {"name": name}, "spec": {"bgp": bgp}}


@pytest.mark.parametrize("api", ["projectcalico.org/v3", "crd.projectcalico.org/v1"])
def test_calico_node_ipv6_address_in_both_api_groups(api: str) -> None:
    docs = [
        calico_node(api, {"ipv4Address": "10.0.0.1/24", "ipv6Address": "fd00::0:1/64"}),
        calico_node(api, {"ipv6Address": "fd00::2/64"}, name="n2"),
    ]
    nodes = parse_resources(docs).state.nodes
    assert [(n.name, n.ip, n.ip6) for n in nodes] == [
        ("n1", "10.0.0.1", "fd00::1"),
        ("n2", None, "fd00::2"),
    ]
    with pytest.raises(InputError, match=r"spec\.bgp\.ipv6Address"):
        parse_resources([calico_node(api, {"ipv6Address": "fd00::/x"})])


def test_kdd_annotation_read_by_the_verifier() -> None:
    docs = [k8s_node(annotations={ANN_IPV6: "fd00::1/64"})]
    (node,) = parse_resources(docs).state.nodes
    assert (node.ip, node.ip6) == (None, "fd00::1")
    with pytest.raises(InputError, match="IPv6Address"):
        parse_resources([k8s_node(annotations={ANN_IPV6: "nope"})])


def test_etcd_documents_map_ipv6_both_ways() -> None:
    doc = calico_node("projectcalico.org/v3", {"ipv6Address": "fd00::7/64"})
    node = node_from_calico(doc)
    assert (node.ip, node.ip6, node.annotations[ANN_IPV6]) == (None, "fd00::7", "fd00::7/64")
    written = node_to_calico(node)
    assert written["spec"]["bgp"] == {"ipv6Address": "fd00::7/64"}
    for synthetic in synthetic_cluster(2, ip_family="dual"):
        again = node_from_calico(node_to_calico(synthetic))
        assert (again.ip, again.ip6) == (synthetic.ip, synthetic.ip6)
    with pytest.raises(InputError, match=r"spec\.bgp\.ipv6Address"):
        node_from_calico(calico_node("projectcalico.org/v3", {"ipv6Address": "fd00::1::2"}))


def test_synthetic_families() -> None:
    dual = synthetic_cluster(100, ip_family="dual", ipv4_only=0.25)
    assert all(n.ip is not None for n in dual)
    assert sum(n.ip6 is None for n in dual) == 25
    six = synthetic_cluster(70000, ip_family="ipv6")
    assert all(n.ip is None for n in six)
    assert len({n.ip6 for n in six}) == 70000
    assert all(ipaddress.IPv6Address(n.ip6 or "").compressed == n.ip6 for n in six[-3:])
