"""parse_resources: Kubernetes/Calico resource dicts -> CalicoState."""

from __future__ import annotations

import time
from typing import Any

import pytest

from calico_rr.core.bgp.resources import ParsedResources, calico_node_from_k8s_dict, parse_resources
from calico_rr.errors import InputError
from calico_rr.model import ANN_ASN, ANN_CLUSTER_ID, ANN_IPV4, BGPConfig, ReversePeering

V1 = "crd.projectcalico.org/v1"
V3 = "projectcalico.org/v3"


def k8s_node(name: str, ip: str | None = "10.0.0.5/24", **ann: str) -> dict[str, Any]:
    annotations = dict(ann)
    if ip is not None:
        annotations[ANN_IPV4] = ip
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"zone": "a"}, "annotations": annotations},
        "spec": {},
    }


def calico_node(name: str, api: str = V3, **bgp: Any) -> dict[str, Any]:
    return {
        "apiVersion": api,
        "kind": "Node",
        "metadata": {"name": name, "labels": {"rack": "r1"}},
        "spec": {"bgp": bgp},
    }


def peer(name: str, api: str = V1, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec}


def bgpconf(name: str = "default", api: str = V1, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": "BGPConfiguration", "metadata": {"name": name}, "spec": spec}


# ---------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------


def test_k8s_node_annotations() -> None:
    n = calico_node_from_k8s_dict(
        k8s_node("a", "10.0.0.5/24", **{ANN_ASN: "65001", ANN_CLUSTER_ID: "1.2.3.4"})
    )
    assert (n.name, n.ip, n.asn, n.cluster_id) == ("a", "10.0.0.5", 65001, "1.2.3.4")
    assert n.labels == {"zone": "a"}


def test_k8s_node_without_ip_annotation_runs_no_bgp() -> None:
    n = calico_node_from_k8s_dict(k8s_node("a", None))
    assert n.ip is None
    assert n.asn is None and n.cluster_id is None


def test_asdot_asn_and_bare_address() -> None:
    n = calico_node_from_k8s_dict(k8s_node("a", "10.0.0.5", **{ANN_ASN: "1.10"}))
    assert n.ip == "10.0.0.5"
    assert n.asn == 65546


@pytest.mark.parametrize(
    ("ann", "field"),
    [
        ({ANN_CLUSTER_ID: "not-an-ip"}, ANN_CLUSTER_ID),
        ({ANN_CLUSTER_ID: "1.2.3"}, ANN_CLUSTER_ID),
        ({ANN_CLUSTER_ID: "1.2.3.256"}, ANN_CLUSTER_ID),
        ({ANN_ASN: "x"}, ANN_ASN),
        ({ANN_ASN: "4294967296"}, ANN_ASN),
        ({ANN_IPV4: "10.0.0.300/24"}, ANN_IPV4),
        ({ANN_IPV4: "10.0.0.1/33"}, ANN_IPV4),
        ({ANN_IPV4: "010.0.0.1/24"}, ANN_IPV4),
        ({ANN_IPV4: "fd00::1/64"}, ANN_IPV4),
    ],
)
def test_k8s_node_invalid_annotation(ann: dict[str, str], field: str) -> None:
    doc = k8s_node("bad")
    doc["metadata"]["annotations"].update(ann)
    with pytest.raises(InputError) as err:
        parse_resources([doc])
    assert err.value.obj == "Node bad"
    assert err.value.field is not None and field in err.value.field


def test_non_string_label_is_rejected() -> None:
    doc = k8s_node("bad")
    doc["metadata"]["labels"]["x"] = True
    with pytest.raises(InputError, match="got a boolean True") as err:
        parse_resources([doc])
    assert err.value.field == 'metadata.labels["x"]'  # spelt as core.formats.kube spells it


@pytest.mark.parametrize("api", [V1, V3])
def test_calico_node(api: str) -> None:
    doc = calico_node(
        "c", api, ipv4Address="10.1.2.3/16", asNumber=65010, routeReflectorClusterID="9.9.9.9"
    )
    (n,) = parse_resources([doc]).state.nodes
    assert (n.name, n.ip, n.asn, n.cluster_id, dict(n.labels)) == (
        "c",
        "10.1.2.3",
        65010,
        "9.9.9.9",
        {"rack": "r1"},
    )


def test_calico_node_bad_cluster_id() -> None:
    with pytest.raises(InputError) as err:
        parse_resources([calico_node("c", routeReflectorClusterID="abc")])
    assert (err.value.obj, err.value.field) == ("Node c", "spec.bgp.routeReflectorClusterID")


def test_same_node_as_k8s_and_calico_node_merges() -> None:
    k = k8s_node("n", "10.0.0.5/24", **{ANN_ASN: "65001"})
    c = calico_node("n", ipv4Address="10.0.0.9/24", routeReflectorClusterID="1.1.1.1")
    parsed = parse_resources([k, c])
    (n,) = parsed.state.nodes
    assert n.ip == "10.0.0.9"  # the later document's BGP field wins
    assert n.cluster_id == "1.1.1.1"
    assert n.asn == 65001  # not set by the later document: kept
    assert dict(n.labels) == {"zone": "a", "rack": "r1"}
    assert len(parsed.notes) == 1 and "Node n" in parsed.notes[0]
    # Other order: the Kubernetes annotation wins.
    (n2,) = parse_resources([c, k]).state.nodes
    assert n2.ip == "10.0.0.5"
    assert n2.cluster_id == "1.1.1.1"


def test_duplicate_names_within_a_kind_and_group() -> None:
    with pytest.raises(InputError, match="duplicate") as err:
        parse_resources([k8s_node("n"), k8s_node("n")], where="f.yaml")
    assert err.value.obj == "Node n"
    assert "first seen as document 1 of f.yaml, again as document 2 of f.yaml" in str(err.value)
    for api in (V1, V3):
        with pytest.raises(InputError, match="duplicate"):
            parse_resources([calico_node("n", api), calico_node("n", api)])
        with pytest.raises(InputError, match="duplicate BGPPeer") as err:
            parse_resources(
                [peer("p", api, peerSelector="all()"), peer("p", api, peerIP="1.2.3.4")]
            )
        assert err.value.obj == "BGPPeer p"
        with pytest.raises(InputError, match="duplicate BGPConfiguration"):
            parse_resources([bgpconf(api=api), bgpconf(api=api)])


def test_one_object_in_both_api_groups_is_read_once_from_crd_projectcalico_org() -> None:
    # calico-apiserver serves projectcalico.org/v3 from the crd.projectcalico.org/v1
    # CRDs: a dump of both groups holds every object twice (resolve_api_groups).
    docs = [
        peer("p", V3, peerSelector="all()"),
        bgpconf(api=V1, nodeToNodeMeshEnabled=False),
        calico_node("n", V1, ipv4Address="10.0.0.9/24"),
        peer("p", V1, peerSelector="all()"),
        bgpconf(api=V3, nodeToNodeMeshEnabled=False),
        calico_node("n", V3, ipv4Address="10.0.0.9/24"),
    ]
    parsed = parse_resources(docs, where="dump.yaml")
    assert [p.name for p in parsed.state.peers] == ["p"]
    assert [n.ip for n in parsed.state.nodes] == ["10.0.0.9"]
    assert parsed.state.config.mesh_enabled is False
    both = [n for n in parsed.notes if "both API groups" in n]
    assert len(both) == 3 and all("same spec" in n for n in both)
    assert any(
        "BGPPeer p is in both API groups (crd.projectcalico.org/v1 at document 4 of dump.yaml, "
        "projectcalico.org/v3 at document 1 of dump.yaml)" in n
        for n in both
    )


def test_differing_copies_in_both_groups_read_the_v1_one_and_say_so() -> None:
    v1 = peer("p", V1, peerSelector="has(rr)")
    v3 = peer("p", V3, peerSelector="all()")
    for order in ([v1, v3], [v3, v1]):
        parsed = parse_resources(order)
        (p,) = parsed.state.peers
        assert p.peer_selector == "has(rr)"
        (note,) = parsed.notes
        assert "specs differ" in note and "only the crd.projectcalico.org/v1 one counts" in note
    # A third copy is a true duplicate within its group.
    with pytest.raises(InputError, match="duplicate BGPPeer"):
        parse_resources([v1, v3, peer("p", V3, peerSelector="all()")])


# ---------------------------------------------------------------------------
# BGPPeer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("api", [V1, V3])
def test_bgppeer_fields(api: str) -> None:
    doc = peer(
        "p",
        api,
        nodeSelector="has(rr)",
        peerIP="192.0.2.1:179",
        asNumber=65000,
        maxRestartTime="120s",
        password={"secretKeyRef": {"name": "bgp", "key": "pw"}},
    )
    doc["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "calico-rr"}
    (p,) = parse_resources([doc]).state.peers
    assert p.name == "p"
    assert p.node is None and p.node_selector == "has(rr)"
    assert p.peer_ip == "192.0.2.1" and p.as_number == 65000
    assert p.peer_selector is None
    assert p.reverse_peering is ReversePeering.AUTO
    assert p.max_restart_time == "120s"
    assert p.password_secret == ("bgp", "pw")
    assert dict(p.labels) == {"app.kubernetes.io/managed-by": "calico-rr"}


@pytest.mark.parametrize(
    ("peer_ip", "address"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("10.0.0.1:1790", "10.0.0.1"),
        ("fd00::1", "fd00::1"),
        ("[fd00:0::1]:179", "fd00::1"),
        ("[fd00::2]", "fd00::2"),
    ],
)
def test_peer_ip_forms(peer_ip: str, address: str) -> None:
    (p,) = parse_resources([peer("p", node="n1", peerIP=peer_ip, asNumber=1)]).state.peers
    assert p.peer_ip == address
    assert p.node == "n1"


def test_reverse_peering_manual_and_empty_fields_unset() -> None:
    doc = peer("p", node="", nodeSelector="a == 'b'", peerSelector="all()", reversePeering="Manual")
    (p,) = parse_resources([doc]).state.peers
    assert p.reverse_peering is ReversePeering.MANUAL
    assert p.node is None


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"node": "a", "nodeSelector": "all()", "peerSelector": "all()"},
            "spec.nodeSelector",
            "both",
        ),
        ({"peerIP": "10.0.0.1", "peerSelector": "all()"}, "spec.peerIP", "both"),
        ({"nodeSelector": "all()"}, "spec.peerIP", "required"),
        ({"peerSelector": "has("}, "spec.peerSelector", "position 4"),
        ({"nodeSelector": "a = 'b'", "peerSelector": "all()"}, "spec.nodeSelector", "operator"),
        ({"peerIP": "10.0.0"}, "spec.peerIP", "valid IP"),
        ({"peerIP": "10.0.0.1:99999"}, "spec.peerIP", "port"),
        ({"peerIP": "[fd00::1"}, "spec.peerIP", "]"),
        ({"peerIP": "10.0.0.1", "asNumber": -1}, "spec.asNumber", "0..4294967295"),
        ({"peerIP": "10.0.0.1", "asNumber": 4294967296}, "spec.asNumber", "integer"),
        ({"peerIP": "10.0.0.1", "asNumber": True}, "spec.asNumber", "integer"),
        ({"peerIP": "10.0.0.1", "asNumber": 1.5}, "spec.asNumber", "integer"),
        ({"peerSelector": "all()", "asNumber": 65000}, "spec.asNumber", "peerSelector"),
        ({"peerSelector": "all()", "reversePeering": "Sometimes"}, "spec.reversePeering", "Manual"),
        (
            {"peerSelector": "all()", "password": {"secretKeyRef": {"name": "x"}}},
            "secretKeyRef",
            "key",
        ),
    ],
)
def test_bgppeer_errors(spec: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        parse_resources([peer("bad", **spec)])
    assert err.value.obj == "BGPPeer bad"
    assert field in str(err.value.field)
    assert str(err.value).startswith("BGPPeer bad field ")


def test_invalid_selector_message_includes_selector_error() -> None:
    with pytest.raises(InputError) as err:
        parse_resources([peer("bad", peerSelector="rack == r1")])
    assert "expected a quoted string" in str(err.value)


# ---------------------------------------------------------------------------
# BGPConfiguration, lists, other kinds, ordering
# ---------------------------------------------------------------------------


def test_bgp_configuration_default_only() -> None:
    parsed = parse_resources(
        [bgpconf(nodeToNodeMeshEnabled=False, asNumber=65100), bgpconf("node.n1", asNumber=1)]
    )
    assert parsed.state.config == BGPConfig(mesh_enabled=False, as_number=65100)
    assert any("node.n1" in n for n in parsed.notes)
    assert parse_resources([bgpconf()]).state.config == BGPConfig()
    assert parse_resources([]).state.config == BGPConfig(mesh_enabled=True, as_number=None)
    with pytest.raises(InputError) as err:
        parse_resources([bgpconf(nodeToNodeMeshEnabled="no")])
    assert err.value.field == "spec.nodeToNodeMeshEnabled"


def test_lists_none_other_kinds_and_sorting() -> None:
    docs = [
        None,
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [k8s_node("z"), k8s_node("b", "10.0.0.6/24")],
        },
        {"apiVersion": V1, "kind": "BGPPeerList", "items": [peer("q", peerSelector="all()")]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}},
        {"apiVersion": "v1", "kind": "NodeList", "items": None},
        peer("a", peerSelector="all()"),
        {"apiVersion": "apps/v1", "kind": "BGPPeer", "metadata": {"name": "alien"}},
    ]
    parsed = parse_resources(docs)
    assert isinstance(parsed, ParsedResources)
    assert [n.name for n in parsed.state.nodes] == ["b", "z"]
    assert [p.name for p in parsed.state.peers] == ["a", "q"]
    assert "ignored ConfigMap cm" in parsed.notes
    assert any(n.startswith("ignored BGPPeer alien") for n in parsed.notes)


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ("just a string", None, "expected a Kubernetes object or List, got a string"),
        ({"apiVersion": "v1", "metadata": {"name": "x"}}, "kind", "missing"),
        ({"apiVersion": "v1", "kind": 7, "metadata": {"name": "x"}}, "kind", "got 7"),
        ({"apiVersion": ["v1"], "kind": "Node", "metadata": {"name": "x"}}, "apiVersion", "got"),
        ({"apiVersion": "v1", "kind": "Node", "metadata": {}}, "metadata.name", "without a name"),
        ({"apiVersion": "v1", "kind": "Node"}, "metadata.name", "Node without a name"),
        ({"apiVersion": "v1", "kind": "Node", "metadata": [1]}, "metadata", "got a list"),
        (
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": 10**5000}},
            "metadata.name",
            "bits",
        ),
    ],
)
def test_malformed_documents_name_position_and_source(
    doc: Any, field: str | None, message: str
) -> None:
    # Documents count from 1, empty ones included (core.formats.fields.position).
    with pytest.raises(InputError, match=message) as err:
        parse_resources([None, k8s_node("ok"), doc], where="nodes.yaml")
    assert err.value.obj == "document 3 of nodes.yaml"
    assert err.value.field == field


def test_malformed_list_item_names_its_position() -> None:
    docs = [{"kind": "List", "items": [k8s_node("a"), 7]}]
    with pytest.raises(InputError, match="expected a Kubernetes object, got a number") as err:
        parse_resources(docs, where="rendered")
    assert err.value.obj == "item 2 of rendered"
    later = [None, {"kind": "List", "items": [k8s_node("a"), 7]}]
    with pytest.raises(InputError) as err:
        parse_resources(later, where="rendered")
    assert err.value.obj == "item 2 of document 2 of rendered"
    with pytest.raises(InputError, match="must be a list, got a map") as err:
        parse_resources([{"kind": "List", "items": {"a": 1}}], where="f")
    assert (err.value.obj, err.value.field) == ("document 1 of f", "items")


def test_5000_nodes_and_100_peers_parse_fast() -> None:
    docs: list[Any] = []
    for i in range(5000):
        doc = k8s_node(f"node-{i:05d}", f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}/16")
        doc["metadata"]["labels"] = {
            "kubernetes.io/hostname": f"node-{i:05d}",
            "topology.kubernetes.io/zone": f"z{i % 3}",
            "calico-rr.io/group": f"g{i % 7}",
        }
        docs.append(doc)
    docs += [peer(f"p{j}", nodeSelector=f"g == '{j}'", peerSelector="has(rr)") for j in range(100)]
    t0 = time.perf_counter()
    parsed = parse_resources(docs)
    elapsed = time.perf_counter() - t0
    assert len(parsed.state.nodes) == 5000 and len(parsed.state.peers) == 100
    # Well under 0.1 s on a normal machine; generous so a loaded CI does not flake.
    assert elapsed < 0.5


def test_typed_list_items_inherit_kind_and_api_version() -> None:
    bare_node = k8s_node("a")
    del bare_node["kind"], bare_node["apiVersion"]
    bare_peer = peer("p", peerSelector="all()")
    del bare_peer["kind"], bare_peer["apiVersion"]
    parsed = parse_resources(
        [
            {"apiVersion": "v1", "kind": "NodeList", "items": [bare_node]},
            {"apiVersion": V3, "kind": "BGPPeerList", "items": [bare_peer]},
        ]
    )
    assert [n.ip for n in parsed.state.nodes] == ["10.0.0.5"]
    assert [p.name for p in parsed.state.peers] == ["p"]
    # The generic List says nothing about its items' kind.
    with pytest.raises(InputError, match="item 1 of input field kind: missing"):
        parse_resources([{"apiVersion": "v1", "kind": "List", "items": [bare_node]}])
