"""core.formats.etcd: Calico's etcd keys and v3 documents <-> the core's data (pure)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico_rr.core.bgp.resources import calico_node_from_k8s_dict, parse_resources
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats.etcd_nodes import (
    OWNED_FIELDS_ANNOTATION,
    apply_node,
    k8s_node_name,
    node_from_calico,
    node_state_from_calico,
    node_to_calico,
    owned_fields,
    with_kube_health,
)
from calico_rr.core.operator.decide import reconcile
from calico_rr.core.operator.safety import check
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import Decision, Observed, Phase
from calico_rr.core.planning.config import GROUP_LABEL, RR_LABEL, PlanConfig
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.errors import InputError
from calico_rr.model import ANN_ASN, ANN_CLUSTER_ID, ANN_IPV4, MANAGED_BY_LABEL, Node

V3 = "projectcalico.org/v3"
ROOT = "/calico/resources/v3/projectcalico.org/"


def calico_node(name: str, *, labels: dict[str, str] | None = None, **bgp: Any) -> dict[str, Any]:
    return {
        "apiVersion": V3,
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": dict(labels or {}),
            "uid": f"uid-{name}",
            "creationTimestamp": "2024-01-02T03:04:05Z",
        },
        "spec": {"bgp": bgp} if bgp else {},
    }


names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,30}[a-z0-9])?", fullmatch=True)

# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------


@given(plural=st.sampled_from(sorted(L.KINDS)), name=names)
def test_key_round_trip(plural: str, name: str) -> None:
    key = L.resource_key(plural, name)
    assert key == f"{ROOT}{plural}/{name}"
    assert L.parse_key(key) == L.ResourceKey(plural, name)
    assert L.parse_key(key).kind == L.KINDS[plural]  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["", "a/b", "../x", "Upper", "-x", "x-", "a" * 254, "a b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="not a valid resource name"):
        L.resource_key("nodes", name)
    assert L.parse_key(f"{ROOT}nodes/{name}") is None


@pytest.mark.parametrize(
    "key",
    [
        "/calico/resources/v3/projectcalico.org/networkpolicies/ns1/p",  # namespaced
        "/calico/ipam/v2/assignment/x",
        "/calico/resources/v3/projectcalico.org/nodes",
        "/calico-rr/leader",
    ],
)
def test_other_keys_are_not_resources(key: str) -> None:
    assert L.parse_key(key) is None


def test_felix_status_key() -> None:
    assert L.felix_status_host("/calico/felix/v2/no-region/host/node-1/status") == "node-1"
    assert (
        L.felix_status_host("/calico/felix/v2/no-region/host/node-1/last_reported_status") is None
    )
    assert L.felix_status_host(f"{ROOT}nodes/node-1") is None


# ---------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------


def test_encode_decode_round_trip_sets_resource_version_from_revision() -> None:
    doc = calico_node("n1", ipv4Address="10.0.0.1/24")
    doc["metadata"]["resourceVersion"] = "999"
    key, value = L.encode_document(doc)
    assert key == f"{ROOT}nodes/n1"
    stored = json.loads(value)
    assert "resourceVersion" not in stored["metadata"]  # etcd's revision is the version
    back = L.decode_document(key, value, 42)
    assert back["metadata"]["resourceVersion"] == "42"
    del back["metadata"]["resourceVersion"]
    del doc["metadata"]["resourceVersion"]
    assert back == doc


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}), "expected"),
        (json.dumps({"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "n1"}}), "Node"),
        (json.dumps({"apiVersion": V3, "kind": "Node", "metadata": {"name": "n2"}}), "match"),
    ],
)
def test_decode_refuses_documents_that_do_not_match_their_key(
    value: bytes | str, message: str
) -> None:
    raw = value.encode() if isinstance(value, str) else value
    with pytest.raises(InputError, match=message):
        L.decode_document(f"{ROOT}nodes/n1", raw, 3)


def test_encode_refuses_unknown_kinds_and_groups() -> None:
    with pytest.raises(InputError, match="cannot store kind"):
        L.encode_document({"apiVersion": V3, "kind": "Pod", "metadata": {"name": "x"}})
    with pytest.raises(InputError, match=r"expected projectcalico\.org/v3"):
        L.encode_document(
            {"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer", "metadata": {"name": "x"}}
        )


# ---------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------


def test_node_fields_appear_under_the_kdd_names() -> None:
    doc = calico_node(
        "n1",
        labels={"topology.kubernetes.io/zone": "z1"},
        ipv4Address="10.0.0.5/24",
        asNumber=65001,
        routeReflectorClusterID="224.0.0.1",
    )
    node = node_from_calico(doc)
    assert (node.name, node.ip, node.ready) == ("n1", "10.0.0.5", True)
    assert node.labels == {"topology.kubernetes.io/zone": "z1"}
    assert node.annotations == {
        ANN_IPV4: "10.0.0.5/24",
        ANN_ASN: "65001",
        ANN_CLUSTER_ID: "224.0.0.1",
    }
    assert node.created == 1704164645.0
    assert not node_from_calico(doc, ready=False).ready


def test_node_without_bgp_runs_no_bgp() -> None:
    node = node_from_calico(calico_node("n1"))
    assert node.ip is None and node.annotations == {}


@pytest.mark.parametrize(
    ("bgp", "field"),
    [
        ({"ipv4Address": "10.0.0.300/24"}, "spec.bgp.ipv4Address"),
        ({"ipv4Address": 17}, "spec.bgp.ipv4Address"),
        ({"ipv4Address": "10.0.0.1/24", "routeReflectorClusterID": "x"}, "routeReflectorClusterID"),
    ],
)
def test_bad_node_fields_name_the_field(bgp: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError, match=field):
        node_from_calico(calico_node("n1", **bgp))


ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
label_values = st.from_regex(r"[a-z0-9]{0,8}", fullmatch=True)


@given(
    name=names,
    ip=st.none() | ipv4,
    plen=st.integers(0, 32),
    asn=st.none() | st.integers(0, 2**32 - 1),
    cid=st.none() | ipv4,
    labels=st.dictionaries(st.sampled_from(["a", "b", "zone", RR_LABEL]), label_values),
)
def test_kdd_view_agrees_with_calicos_own_reading(
    name: str, ip: str | None, plen: int, asn: int | None, cid: str | None, labels: dict[str, str]
) -> None:
    """What the planner sees of an etcd node (KDD-named annotations) is what
    calico-node reads from the v3 document (core.bgp.resources on the raw document)."""
    bgp: dict[str, Any] = {}
    if ip is not None:
        bgp["ipv4Address"] = f"{ip}/{plen}"
    if asn is not None:
        bgp["asNumber"] = asn
    if cid is not None:
        bgp["routeReflectorClusterID"] = cid
    doc = calico_node(name, labels=labels, **bgp)
    node = node_from_calico(doc)
    as_kdd = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": dict(node.labels), "annotations": node.annotations},
    }
    assert calico_node_from_k8s_dict(as_kdd) == parse_resources([doc]).state.nodes[0]
    again = node_from_calico(node_to_calico(node))
    assert (again.name, again.ip, again.labels, again.annotations, again.created) == (
        node.name,
        node.ip,
        node.labels,
        node.annotations,
        node.created,
    )


def test_owned_fields_come_from_our_record() -> None:
    doc = calico_node("n1", labels={GROUP_LABEL: "g1", "user": "x"})
    assert owned_fields(doc) == (frozenset(), frozenset())
    done = apply_node(doc, {GROUP_LABEL: "g1"}, {})
    state = node_state_from_calico(done)
    assert state.owned_labels == {GROUP_LABEL}
    assert state.owned_annotations == frozenset()
    assert state.uid == "uid-n1"
    assert state.node.raw is None
    broken = copy.deepcopy(doc)
    broken["metadata"]["annotations"] = {OWNED_FIELDS_ANNOTATION: "{oops"}
    with pytest.raises(InputError, match="must be JSON"):
        owned_fields(broken)


# ---------------------------------------------------------------------------
# apply_node: server-side apply's rules on a Calico Node
# ---------------------------------------------------------------------------


def test_apply_sets_our_fields_and_keeps_everyone_elses() -> None:
    doc = calico_node("n1", labels={"user": "x"}, ipv4Address="10.0.0.1/24", asNumber=65001)
    doc["metadata"]["annotations"] = {"note": "keep"}
    before = copy.deepcopy(doc)
    out = apply_node(doc, {RR_LABEL: "true", GROUP_LABEL: "g1"}, {ANN_CLUSTER_ID: "224.0.0.1"})
    assert doc == before  # the input is not modified
    assert out["metadata"]["labels"] == {"user": "x", RR_LABEL: "true", GROUP_LABEL: "g1"}
    assert out["spec"]["bgp"] == {
        "ipv4Address": "10.0.0.1/24",
        "asNumber": 65001,
        "routeReflectorClusterID": "224.0.0.1",
    }
    assert out["metadata"]["annotations"]["note"] == "keep"
    assert out["metadata"]["uid"] == "uid-n1"
    assert owned_fields(out) == ({RR_LABEL, GROUP_LABEL}, {ANN_CLUSTER_ID})
    assert (
        apply_node(out, {RR_LABEL: "true", GROUP_LABEL: "g1"}, {ANN_CLUSTER_ID: "224.0.0.1"}) == out
    )


def test_apply_removes_what_we_set_before_and_omit_now() -> None:
    doc = calico_node("n1", labels={"user": "x"}, ipv4Address="10.0.0.1/24")
    rr = apply_node(doc, {RR_LABEL: "true", GROUP_LABEL: "g1"}, {ANN_CLUSTER_ID: "224.0.0.1"})
    client = apply_node(rr, {GROUP_LABEL: "g2"}, {})
    assert client["metadata"]["labels"] == {"user": "x", GROUP_LABEL: "g2"}
    assert "routeReflectorClusterID" not in client["spec"]["bgp"]
    gone = apply_node(client, {}, {})
    assert gone["metadata"]["labels"] == {"user": "x"}
    assert "annotations" not in gone["metadata"]  # the record goes with our last field
    assert gone["spec"] == {"bgp": {"ipv4Address": "10.0.0.1/24"}}


def test_a_field_someone_else_set_is_a_conflict_never_overwritten() -> None:
    doc = calico_node(
        "n1",
        labels={GROUP_LABEL: "mine"},
        ipv4Address="10.0.0.1/24",
        routeReflectorClusterID="1.1.1.1",
    )
    with pytest.raises(L.OwnershipConflict, match=r"calico-rr.io/group.*'mine'"):
        apply_node(doc, {GROUP_LABEL: "g1"}, {})
    with pytest.raises(L.OwnershipConflict, match=r"routeReflectorClusterID is '1\.1\.1\.1'"):
        apply_node(doc, {GROUP_LABEL: "mine"}, {ANN_CLUSTER_ID: "224.0.0.1"})
    # The same value is taken over (shared, as server-side apply does) ...
    shared = apply_node(doc, {GROUP_LABEL: "mine"}, {})
    assert owned_fields(shared)[0] == {GROUP_LABEL}
    # ... and a cluster ID we never set stays when we write the node without one.
    assert shared["spec"]["bgp"]["routeReflectorClusterID"] == "1.1.1.1"
    with pytest.raises(InputError, match=r"only projectcalico\.org/RouteReflectorClusterID"):
        apply_node(doc, {}, {"other": "x"})


@given(
    user=st.dictionaries(st.sampled_from(["u1", "u2", "zone"]), label_values),
    first=st.dictionaries(
        st.sampled_from([RR_LABEL, GROUP_LABEL, "calico-rr.io/role"]), label_values
    ),
    second=st.dictionaries(
        st.sampled_from([RR_LABEL, GROUP_LABEL, "calico-rr.io/quorum"]), label_values
    ),
    cid1=st.none() | ipv4,
    cid2=st.none() | ipv4,
)
def test_apply_sequence_leaves_exactly_the_last_apply(
    user: dict[str, str],
    first: dict[str, str],
    second: dict[str, str],
    cid1: str | None,
    cid2: str | None,
) -> None:
    doc = calico_node("n1", labels=user, ipv4Address="10.0.0.1/24")
    a1 = {ANN_CLUSTER_ID: cid1} if cid1 else {}
    a2 = {ANN_CLUSTER_ID: cid2} if cid2 else {}
    out = apply_node(apply_node(doc, first, a1), second, a2)
    assert out["metadata"]["labels"] == {**user, **second}
    assert out["spec"]["bgp"].get("routeReflectorClusterID") == cid2
    assert owned_fields(out) == (frozenset(second), frozenset(a2))


# ---------------------------------------------------------------------------
# Our objects, the mesh flag, CalicoNodeStatus
# ---------------------------------------------------------------------------


def test_managed_document_converts_and_keeps_identity() -> None:
    peer = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPPeer",
        "metadata": {"name": "calico-rr-g1", "labels": {MANAGED_BY_LABEL: "calico-rr"}},
        "spec": {"nodeSelector": "all()", "peerSelector": "has(x)"},
    }
    new = L.managed_document(peer, None, uid="u1", now=0.0)
    assert new["apiVersion"] == V3
    assert new["metadata"]["uid"] == "u1"
    assert new["metadata"]["creationTimestamp"] == "1970-01-01T00:00:00Z"
    assert parse_resources([new]).state.peers[0].peer_selector == "has(x)"
    changed = dict(peer, spec={"nodeSelector": "all()", "peerSelector": "has(y)"})
    again = L.managed_document(changed, new, uid="u2", now=99.0)
    assert again["metadata"]["uid"] == "u1"  # identity of the stored object is kept
    assert again["metadata"]["creationTimestamp"] == "1970-01-01T00:00:00Z"
    assert again["spec"]["peerSelector"] == "has(y)"


def test_managed_document_never_takes_over_a_users_object() -> None:
    ours = {
        "apiVersion": V3,
        "kind": "BGPPeer",
        "metadata": {"name": "tor", "labels": {MANAGED_BY_LABEL: "calico-rr"}},
        "spec": {"peerIP": "10.9.9.9", "asNumber": 65000},
    }
    users = {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "tor"}, "spec": {}}
    with pytest.raises(L.OwnershipConflict, match="not created by calico-rr"):
        L.managed_document(ours, users, uid="u", now=0.0)
    with pytest.raises(L.OwnershipConflict, match=r"without app\.kubernetes\.io/managed-by"):
        L.managed_document(users, None, uid="u", now=0.0)
    assert not L.is_managed(users) and L.is_managed(ours) and not L.is_managed(None)


def test_mesh_flag() -> None:
    assert L.mesh_enabled(None)
    created = L.mesh_document(None, False, uid="u", now=0.0)
    assert not L.mesh_enabled(created) and L.is_managed(created)
    users = {
        "apiVersion": V3,
        "kind": "BGPConfiguration",
        "metadata": {"name": "default", "uid": "x"},
        "spec": {"asNumber": 65010, "logSeverityScreen": "Info"},
    }
    assert L.mesh_enabled(users)
    off = L.mesh_document(users, False, uid="u", now=0.0)
    assert off["spec"] == {
        "asNumber": 65010,
        "logSeverityScreen": "Info",
        "nodeToNodeMeshEnabled": False,
    }
    assert off["metadata"] == users["metadata"] and not L.is_managed(off)
    with pytest.raises(InputError, match="true or false"):
        L.mesh_enabled({"spec": {"nodeToNodeMeshEnabled": "no"}})


def test_node_status() -> None:
    doc = {
        "apiVersion": V3,
        "kind": "CalicoNodeStatus",
        "metadata": {"name": "calico-rr-n1"},
        "spec": {"node": "n1"},
        "status": {
            "bgp": {
                "peersV4": [
                    {"peerIP": "10.0.0.2", "state": "Established"},
                    {"peerIP": "10.0.0.3", "state": "Connect"},
                ]
            }
        },
    }
    node, report = L.node_status_from_calico(doc)
    assert node == "n1" and report.reported and report.established == {"10.0.0.2"}
    assert not L.node_status_from_calico({**doc, "status": {}})[1].reported


# ---------------------------------------------------------------------------
# The core reconciles an etcd datastore held as documents
# ---------------------------------------------------------------------------


class DocStore:
    """An etcd keyspace as {key: document}, written only through etcd_layout."""

    def __init__(self, nodes: list[Node]) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        for n in nodes:
            self.put(node_to_calico(n, uid=f"uid-{n.name}"))
        self.writes = 0

    def put(self, doc: dict[str, Any]) -> None:
        key, value = L.encode_document(doc)
        self.docs[key] = L.decode_document(key, value, 1)

    def of(self, plural: str) -> dict[str, dict[str, Any]]:
        prefix = L.plural_prefix(plural)
        return {k[len(prefix) :]: d for k, d in self.docs.items() if k.startswith(prefix)}

    def observed(self, now: float) -> Observed:
        return Observed(
            nodes={n: node_state_from_calico(d) for n, d in self.of("nodes").items()},
            peers={n: d for n, d in self.of("bgppeers").items() if L.is_managed(d)},
            mesh_enabled=L.mesh_enabled(self.of("bgpconfigurations").get("default")),
            now=now,
        )

    def execute(self, d: Decision, now: float) -> None:
        for p in d.peer_applies:
            key = L.resource_key("bgppeers", p["metadata"]["name"])
            self.put(L.managed_document(p, self.docs.get(key), uid="u", now=now))
        for a in d.node_applies:
            key = L.resource_key("nodes", a.name)
            self.put(apply_node(self.docs[key], a.labels, a.annotations))
        for name in d.peer_deletes:
            key = L.resource_key("bgppeers", name)
            assert L.is_managed(self.docs[key])
            del self.docs[key]
        if d.mesh is not None:
            key = L.resource_key("bgpconfigurations", "default")
            self.put(L.mesh_document(self.docs.get(key), d.mesh, uid="u", now=now))
        self.writes += d.writes


def test_reconcile_converges_on_etcd_documents_and_leaves_users_alone() -> None:
    nodes = synthetic_cluster(24, zones=3)
    store = DocStore(nodes)
    user_peer = {
        "apiVersion": V3,
        "kind": "BGPPeer",
        "metadata": {"name": "tor"},
        "spec": {"peerIP": "10.255.0.1", "asNumber": 65000},
    }
    store.put(user_peer)
    settings = OperatorSettings(
        plan=PlanConfig(topology="multi"), session_check="Wait", wait_timeout=1.0, debounce=0.0
    )
    now = 1000.0
    transition: dict[str, Any] | None = None
    for _ in range(50):
        obs = replace(store.observed(now), transition=transition)
        d = reconcile(obs, settings)
        if d.phase == Phase.STEADY:
            break
        store.execute(d, now)
        if d.transition_set:
            transition = d.transition
        now += d.requeue_after or 0.0
    else:
        pytest.fail("no convergence")
    assert not L.mesh_enabled(store.of("bgpconfigurations")["default"])
    state = parse_resources(list(store.docs.values())).state
    rrs = [n for n in state.nodes if n.cluster_id is not None]
    assert 2 <= len(rrs) < len(nodes)
    assert check(store.docs.values()).ok  # every node reaches every other over the RRs
    stored_user_peer = store.of("bgppeers")["tor"]
    stored_user_peer["metadata"].pop("resourceVersion")
    assert stored_user_peer == user_peer
    # Every label we set is recorded as ours; nothing else is.
    for name, doc in store.of("nodes").items():
        owned, owned_ann = owned_fields(doc)
        ours = {k for k in doc["metadata"]["labels"] if k.startswith("calico-rr.io/")}
        assert owned == ours, name
        assert (ANN_CLUSTER_ID in owned_ann) == ("routeReflectorClusterID" in doc["spec"]["bgp"])


def test_k8s_node_name_follows_orch_refs() -> None:
    doc = {"metadata": {"name": "host-1.example.com"}, "spec": {}}
    assert k8s_node_name(doc) == "host-1.example.com"
    doc["spec"] = {"orchRefs": [{"orchestrator": "openstack", "nodeName": "x"}]}
    assert k8s_node_name(doc) == "host-1.example.com"
    doc["spec"] = {"orchRefs": [{"orchestrator": "k8s", "nodeName": "host-1"}]}
    assert k8s_node_name(doc) == "host-1"
    doc["spec"] = {"orchRefs": "garbage"}
    assert k8s_node_name(doc) == "host-1.example.com"


def test_with_kube_health_takes_health_and_keeps_bgp_fields() -> None:
    from calico_rr.model import Taint

    calico = Node("n1", "10.0.0.1", labels={"zone": "a"}, annotations={"x": "y"})
    kube = Node(
        "n1",
        "192.168.0.9",
        labels={"other": "label"},
        conditions={"Ready": "False"},
        taints=(Taint("node.kubernetes.io/unreachable", "NoExecute"),),
        unschedulable=True,
        deleting=True,
    )
    got = with_kube_health(calico, kube)
    assert (got.ip, dict(got.labels), dict(got.annotations)) == (
        "10.0.0.1",
        {"zone": "a"},
        {"x": "y"},
    )
    assert dict(got.conditions) == {"Ready": "False"} and got.taints == kube.taints
    assert got.unschedulable and got.deleting and not got.ready
    missing = with_kube_health(calico, None)
    assert dict(missing.conditions) == {"Ready": "Unknown"} and not missing.ready
