"""`calico-rr doctor`: every check fires just above its threshold and not at it, on
dumps of both Calico API groups, and bad input is refused with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from calico_rr.cli import app
from calico_rr.core.doctor.checks import diagnose
from calico_rr.core.doctor.findings import Finding, Severity
from calico_rr.core.doctor.inventory import inventory_from_documents
from calico_rr.core.operator.typha import MAX_REPLICAS as TYPHA_MAX
from calico_rr.core.operator.typha import replicas_wanted as typha_replicas_wanted
from calico_rr.errors import InputError
from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV4, ZONE_LABEL

runner = CliRunner()
V1 = "crd.projectcalico.org/v1"
V3 = "projectcalico.org/v3"
RR = "example.com/rr"

# -- building dumps ------------------------------------------------------------------


def k8s_node(
    i: int,
    *,
    zone: str | None = None,
    cid: str | None = None,
    labels: dict[str, str] | None = None,
    ip: str | None = "",
) -> dict[str, Any]:
    """Kubernetes Node ``n0007``; address 10.<i/200>.<i%200>.1/16 unless given
    (``None``: no BGP address)."""
    lab = dict(labels or {})
    if zone is not None:
        lab[ZONE_LABEL] = zone
    ann: dict[str, str] = {}
    if ip is not None:
        ann[ANN_IPV4] = ip or f"10.{i // 200}.{i % 200}.1/16"
    if cid is not None:
        ann[ANN_CLUSTER_ID] = cid
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"n{i:04d}", "labels": lab, "annotations": ann},
    }


def calico_node(i: int, group: str = V3) -> dict[str, Any]:
    """A Calico Node as the etcd datastore holds it."""
    return {
        "apiVersion": group,
        "kind": "Node",
        "metadata": {"name": f"n{i:04d}"},
        "spec": {"bgp": {"ipv4Address": f"10.{i // 200}.{i % 200}.1/16"}},
    }


def bgpconfig(mesh: bool | None, group: str = V1) -> dict[str, Any]:
    spec: dict[str, Any] = {} if mesh is None else {"nodeToNodeMeshEnabled": mesh}
    meta = {"name": "default"}
    return {"apiVersion": group, "kind": "BGPConfiguration", "metadata": meta, "spec": spec}


def bgppeer(name: str, group: str = V1, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": group, "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec}


def ippool(name: str = "pool", group: str = V1, **spec: Any) -> dict[str, Any]:
    spec.setdefault("cidr", "192.168.0.0/16")
    return {"apiVersion": group, "kind": "IPPool", "metadata": {"name": name}, "spec": spec}


def typha(replicas: int | None, namespace: str = "kube-system") -> dict[str, Any]:
    spec = {} if replicas is None else {"replicas": replicas}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "calico-typha", "namespace": namespace},
        "spec": spec,
    }


def as_list(*groups: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for g in groups:
        items.extend(g if isinstance(g, list) else [g])
    return [{"apiVersion": "v1", "kind": "List", "items": items}]


def mesh_nodes(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [k8s_node(i, **kw) for i in range(n)]


def findings(*parts: list[dict[str, Any]] | dict[str, Any], budget: int = 500) -> list[Finding]:
    return diagnose(inventory_from_documents(as_list(*parts)), session_budget=budget)


def of(found: list[Finding], check: str) -> list[Finding]:
    return [f for f in found if f.id == check]


def rr_cluster(
    clients: int, rrs: int = 3, *, group: str = V1, client_label: bool = True
) -> list[dict[str, Any]]:
    """A single-cluster RR layout, mesh off: RRs n0000.. carry the RR label and one
    cluster ID; every client (label ``role=client``) peers with every RR; Typha x3."""
    nodes = [k8s_node(i, cid="244.0.0.1", labels={RR: "true"}) for i in range(rrs)]
    nodes += [
        k8s_node(rrs + i, labels={"role": "client"} if client_label else {}) for i in range(clients)
    ]
    return [
        *nodes,
        bgpconfig(False, group),
        bgppeer("clients", group, nodeSelector="role == 'client'", peerSelector=f"has({RR})"),
        bgppeer("rr-mesh", group, nodeSelector=f"has({RR})", peerSelector=f"has({RR})"),
        typha(3),
    ]


# -- acceptance: the 300-node full mesh through the CLI ---------------------------------


def mesh_dump_yaml(nodes: int) -> str:
    lines = ["apiVersion: v1", "kind: List", "items:"]
    for i in range(nodes):
        lines += [
            "- apiVersion: v1",
            "  kind: Node",
            "  metadata:",
            f"    name: node-{i}",
            f"    labels: {{{ZONE_LABEL}: zone-{i % 3}}}",
            f"    annotations: {{{ANN_IPV4}: 10.1.{i // 250}.{i % 250 + 1}/24}}",
        ]
    lines += [
        f"- apiVersion: {V1}",
        "  kind: IPPool",
        "  metadata: {name: default-ipv4-ippool}",
        "  spec: {cidr: 192.168.0.0/16, ipipMode: Always, natOutgoing: false}",
        f"- apiVersion: {V1}",
        "  kind: BGPConfiguration",
        "  metadata: {name: default}",
        "  spec: {nodeToNodeMeshEnabled: true}",
        f"- apiVersion: {V1}",
        "  kind: FelixConfiguration",
        "  metadata: {name: default}",
        "  spec: {}",
        "- apiVersion: apps/v1",
        "  kind: Deployment",
        "  metadata: {name: calico-typha, namespace: kube-system}",
        "  spec: {replicas: 1}",
    ]
    return "\n".join(lines) + "\n"


def test_300_node_mesh_dump_reports_mesh_encap_and_typha(tmp_path: Path) -> None:
    dump = tmp_path / "cluster.yaml"
    dump.write_text(mesh_dump_yaml(300))
    result = runner.invoke(app, ["doctor", "--resources", str(dump), "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["findings", "notes"]
    assert any("ignored 1 FelixConfiguration" in n for n in data["notes"]), data["notes"]
    for f in data["findings"]:
        assert list(f) == ["id", "severity", "object", "message", "fix"]
    by_id = {f["id"]: f for f in data["findings"]}
    assert set(by_id) == {"mesh-at-scale", "encap-always", "typha-replicas"}
    assert by_id["mesh-at-scale"]["severity"] == "error"
    assert by_id["mesh-at-scale"]["object"] == "BGPConfiguration/default"
    assert "300 nodes" in by_id["mesh-at-scale"]["message"]
    assert "44850" in by_id["mesh-at-scale"]["message"]  # 300 * 299 / 2 sessions
    assert by_id["encap-always"]["object"] == "IPPool/default-ipv4-ippool"
    assert "ipipMode: CrossSubnet" in by_id["encap-always"]["fix"]
    assert by_id["typha-replicas"]["severity"] == "error"
    assert by_id["typha-replicas"]["object"] == "Deployment/kube-system/calico-typha"
    assert "spec.replicas: 3" in by_id["typha-replicas"]["fix"]
    # errors first, then warnings
    assert [f["severity"] for f in data["findings"]] == ["error", "error", "warning"]


def test_table_output_and_exit_code_zero_without_errors(tmp_path: Path) -> None:
    dump = tmp_path / "small.yaml"
    dump.write_text(mesh_dump_yaml(20))
    result = runner.invoke(app, ["doctor", "--resources", str(dump)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "encap-always" in result.stdout and "IPPool/default-ipv4-ippool" in result.stdout
    assert "mesh-at-scale" not in result.stdout
    assert "checked 20 nodes" in result.stdout
    assert "ignored 1 FelixConfiguration" in result.stdout


def test_session_budget_option_reaches_the_check(tmp_path: Path) -> None:
    dump = tmp_path / "rr.json"
    dump.write_text(json.dumps(as_list(rr_cluster(60))[0]))
    ok = runner.invoke(app, ["doctor", "--resources", str(dump), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["findings"] == []
    tight = runner.invoke(
        app, ["doctor", "--resources", str(dump), "--json", "--session-budget", "61"]
    )
    assert tight.exit_code == 0, tight.output
    found = json.loads(tight.stdout)["findings"]
    assert [f["id"] for f in found] == ["rr-overloaded"]
    assert "62 sessions: 60 clients, 2 RRs" in found[0]["message"]


# -- mesh ------------------------------------------------------------------------------


def test_mesh_at_scale_threshold() -> None:
    assert of(findings(mesh_nodes(100)), "mesh-at-scale") == []
    (f,) = of(findings(mesh_nodes(101)), "mesh-at-scale")
    assert f.severity is Severity.ERROR
    assert "unset (Calico's default: true)" in f.message and "101 nodes" in f.message
    (g,) = of(findings(mesh_nodes(101), bgpconfig(True)), "mesh-at-scale")
    assert "nodeToNodeMeshEnabled is true" in g.message
    assert of(findings(mesh_nodes(300), bgpconfig(False)), "mesh-at-scale") == []


def test_mesh_at_scale_counts_only_bgp_nodes_in_the_mesh() -> None:
    # 101 nodes, but one has no BGP address and one is an RR: 99 in the mesh.
    nodes = [*mesh_nodes(99), k8s_node(99, ip=None), k8s_node(100, cid="1.2.3.4")]
    assert of(findings(nodes), "mesh-at-scale") == []


def test_mesh_with_rrs() -> None:
    nodes = [*mesh_nodes(10), k8s_node(10, cid="244.0.0.1")]
    (f,) = of(findings(nodes), "mesh-with-rrs")
    assert f.severity is Severity.WARNING
    assert f.object == "BGPConfiguration/default"
    assert "n0010" in f.message and "other 10 nodes still hold 9" in f.message
    assert of(findings(nodes, bgpconfig(False)), "mesh-with-rrs") == []
    assert of(findings(mesh_nodes(10)), "mesh-with-rrs") == []


def test_twin_protocols() -> None:
    """Mesh on plus a BGPPeer between non-RR nodes: two protocols per pair."""
    nodes = mesh_nodes(6, labels={"role": "client"})
    peer = bgppeer("clients", peerSelector="role == 'client'")
    (f,) = of(findings(nodes, peer), "twin-protocols")
    assert f.severity is Severity.WARNING
    assert f.object == "BGPConfiguration/default"
    assert "15 pairs of non-RR nodes (n0000-n0001 and 14 more)" in f.message
    assert "stays down until a BIRD restart" in f.message
    assert of(findings(nodes, peer, bgpconfig(False)), "twin-protocols") == []
    assert of(findings(nodes), "twin-protocols") == []
    # the usual migration state (mesh on, clients peering with RRs) has none
    migrating = [d for d in rr_cluster(10) if d["kind"] != "BGPConfiguration"]
    assert of(findings(migrating), "twin-protocols") == []


# -- route reflectors ------------------------------------------------------------------


def test_healthy_rr_cluster_has_no_findings() -> None:
    assert findings(rr_cluster(200)) == []


def test_client_without_rr_uses_the_session_graph() -> None:
    docs = rr_cluster(20)
    docs.append(k8s_node(100))  # no role label: no BGPPeer selects it
    (f,) = of(findings(docs), "client-without-rr")
    assert f.severity is Severity.ERROR
    assert f.object == "Node/n0100"
    assert "1 of 21 non-RR nodes have no BGP session" in f.message
    # The mesh on: no finding (the node meshes with the other clients).
    on = [d for d in docs if d.get("kind") != "BGPConfiguration"]
    assert of(findings(on), "client-without-rr") == []


def test_client_without_rr_groups_nodes_and_softens_with_outside_routers() -> None:
    docs = rr_cluster(0) + [k8s_node(100 + i) for i in range(7)]
    (f,) = of(findings(docs), "client-without-rr")
    assert f.object == "Node/n0100 (+6 more)"
    assert "n0104 and 2 more" in f.message
    tor = bgppeer("tor", peerIP="172.16.0.1", asNumber=65001)
    (g,) = of(findings(docs, tor), "client-without-rr")
    assert g.severity is Severity.WARNING and "outside Calico" in g.message


def test_client_with_sessions_but_no_rr_is_a_warning() -> None:
    docs = [
        *mesh_nodes(5, labels={"rack": "a"}),
        bgpconfig(False),
        bgppeer("rack-mesh", nodeSelector="rack == 'a'", peerSelector="rack == 'a'"),
    ]
    (f,) = of(findings(docs), "client-without-rr")
    assert f.severity is Severity.WARNING
    assert "have BGP sessions but none to a route reflector" in f.message
    assert "no route reflector at all" in f.message


def test_rr_overloaded_threshold_at_the_budget() -> None:
    # Each RR: every client plus the 2 other RRs.
    assert of(findings(rr_cluster(498)), "rr-overloaded") == []  # 500 sessions
    (f,) = of(findings(rr_cluster(499)), "rr-overloaded")  # 501 sessions
    assert f.severity is Severity.WARNING
    assert f.object == "Node/n0000 (+2 more)"
    assert "501 sessions: 499 clients, 2 RRs" in f.message
    assert "--session-budget 500" in f.fix
    assert of(findings(rr_cluster(98), budget=100), "rr-overloaded") == []
    assert len(of(findings(rr_cluster(99), budget=100), "rr-overloaded")) == 1


def _zoned(rr_zones: list[str], client_zones: list[str]) -> list[dict[str, Any]]:
    docs = rr_cluster(0, rrs=0)
    for i, z in enumerate(rr_zones):
        docs.append(k8s_node(i, zone=z, cid="244.0.0.1", labels={RR: "true"}))
    for i, z in enumerate(client_zones):
        docs.append(k8s_node(50 + i, zone=z, labels={"role": "client"}))
    return docs


def test_rr_single_zone() -> None:
    (f,) = of(findings(_zoned(["a", "a", "a"], ["a", "b", "c"])), "rr-single-zone")
    assert f.severity is Severity.WARNING
    assert "zone a" in f.message and "span 3 zones" in f.message
    assert of(findings(_zoned(["a", "b", "a"], ["a", "b", "c"])), "rr-single-zone") == []
    assert of(findings(_zoned(["a", "a"], ["a", "a"])), "rr-single-zone") == []


# -- IP pools --------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["ipipMode", "vxlanMode"])
def test_encap_always(field: str) -> None:
    (f,) = of(findings(mesh_nodes(4), ippool(**{field: "Always"})), "encap-always")
    assert f.severity is Severity.WARNING
    assert f"spec.{field} is Always" in f.message
    assert "4 of them share a subnet" in f.message
    assert f"spec.{field}: CrossSubnet" in f.fix
    assert of(findings(mesh_nodes(4), ippool(**{field: "CrossSubnet"})), "encap-always") == []
    spec: dict[str, Any] = {field: "Always", "disabled": True}
    disabled = ippool(**spec)
    assert of(findings(mesh_nodes(4), disabled), "encap-always") == []


def test_encap_always_is_info_when_every_node_has_its_own_subnet() -> None:
    nodes = [k8s_node(i, ip=f"10.0.{i}.1/24") for i in range(4)]
    (f,) = of(findings(nodes, ippool(ipipMode="Always")), "encap-always")
    assert f.severity is Severity.INFO and "each node alone in its subnet" in f.message


def test_nat_outgoing() -> None:
    (f,) = of(findings(mesh_nodes(2), ippool("p1", natOutgoing=True)), "nat-outgoing")
    assert (f.severity, f.object) == (Severity.INFO, "IPPool/p1")
    assert "192.168.0.0/16" in f.message and "natOutgoing: false" in f.fix
    assert of(findings(mesh_nodes(2), ippool("p1", natOutgoing=False)), "nat-outgoing") == []


# -- Typha -----------------------------------------------------------------------------


def test_typha_missing_thresholds() -> None:
    assert of(findings(mesh_nodes(50)), "typha-missing") == []
    (f,) = of(findings(mesh_nodes(51)), "typha-missing")
    assert f.severity is Severity.WARNING and "51 nodes" in f.message
    (g,) = of(findings(mesh_nodes(101)), "typha-missing")
    assert g.severity is Severity.ERROR
    assert of(findings(mesh_nodes(101), typha(3)), "typha-missing") == []
    # Nodes without a BGP address still run Felix: they count.
    assert of(findings([*mesh_nodes(50), k8s_node(50, ip=None)]), "typha-missing") != []


def test_typha_is_not_checked_on_the_etcd_datastore() -> None:
    nodes = [calico_node(i) for i in range(150)]
    found = findings(nodes, bgpconfig(False, V3), typha(1))
    assert of(found, "typha-missing") == [] and of(found, "typha-replicas") == []


@pytest.mark.parametrize(
    ("nodes", "replicas", "severity"),
    [
        (300, 1, Severity.ERROR),  # one per 200 nodes needs 2
        (300, 2, Severity.WARNING),  # production minimum 3
        (300, 3, None),
        (401, 3, None),
        (601, 3, Severity.ERROR),  # needs 4
        (601, 4, None),
        (10, 9, None),
        (10, 10, Severity.WARNING),  # not fewer than the nodes
        (1000, 20, None),
        (1000, 21, Severity.WARNING),  # more than 20
        (5000, 20, None),  # 25 by the ratio, capped at 20
        (60, None, None),  # spec.replicas unset: 1, below 3
    ],
)
def test_typha_replicas(nodes: int, replicas: int | None, severity: Severity | None) -> None:
    if replicas is None:
        severity = Severity.WARNING
    found = of(findings(mesh_nodes(nodes), bgpconfig(False), typha(replicas)), "typha-replicas")
    if severity is None:
        assert found == []
    else:
        (f,) = found
        assert f.severity is severity
        assert f"spec.replicas is {1 if replicas is None else replicas}" in f.message


@given(st.integers(min_value=0, max_value=100_000))
def test_typha_replica_targets_are_consistent(nodes: int) -> None:
    hard, recommended = typha_replicas_wanted(nodes)
    assert 0 <= hard <= recommended <= TYPHA_MAX
    if nodes >= 2:  # one node: "fewer replicas than nodes" wins, no Typha to ask for
        assert hard * 200 >= min(nodes, TYPHA_MAX * 200)
        assert recommended < nodes
        assert recommended >= min(3, nodes - 1)


# -- selectors -------------------------------------------------------------------------


def test_all_selectors_threshold_and_severities() -> None:
    base = [bgpconfig(False)]
    mesh_peer = bgppeer("mesh", peerSelector="all()")
    assert of(findings(mesh_nodes(100), *base, mesh_peer), "all-selectors") == []
    (f,) = of(findings(mesh_nodes(101), *base, mesh_peer), "all-selectors")
    assert (f.severity, f.object) == (Severity.ERROR, "BGPPeer/mesh")
    explicit = bgppeer("mesh2", nodeSelector="all()", peerSelector="all()")
    (g,) = of(findings(mesh_nodes(101), *base, explicit), "all-selectors")
    assert g.severity is Severity.ERROR

    labelled = [k8s_node(i, labels={"edge": "y"} if i < 3 else {}) for i in range(101)]
    subset = bgppeer("edge", nodeSelector="has(edge)", peerSelector="all()")
    (h,) = of(findings(labelled, *base, subset), "all-selectors")
    assert h.severity is Severity.WARNING and "each of the 3 local nodes" in h.message
    recipe = bgppeer("to-edge", nodeSelector="all()", peerSelector="has(edge)")
    (k,) = of(findings(labelled, *base, recipe), "all-selectors")
    assert k.severity is Severity.INFO and "peer with the 3 nodes" in k.message
    narrow = bgppeer("narrow", nodeSelector="!has(edge)", peerSelector="has(edge)")
    tor = bgppeer("tor", peerIP="172.16.0.1", asNumber=65001)
    assert of(findings(labelled, *base, narrow, tor), "all-selectors") == []


EVERY_NODE = [
    "all()",
    "a == 'x' || all()",
    "!has(nonexistent)",
    "all() && all()",
    "has(kubernetes.io/os)",  # every BGP node carries it (the node without an IP does not)
    "rack in {'r1', 'r2'} || !has(rack)",
]


def _labelled_cluster() -> list[dict[str, Any]]:
    """101 BGP nodes, 3 of them labelled edge, all with kubernetes.io/os and half in
    rack r1; one more node without a BGP address and without labels."""
    nodes = [
        k8s_node(
            i,
            labels={"kubernetes.io/os": "linux"}
            | ({"edge": "y"} if i < 3 else {})
            | ({"rack": "r1"} if i % 2 else {}),
        )
        for i in range(101)
    ]
    return [*nodes, k8s_node(200, ip=None), bgpconfig(False)]


@pytest.mark.parametrize("every", EVERY_NODE)
def test_a_selector_that_selects_every_node_is_all(every: str) -> None:
    """The check evaluates selectors on the nodes' labels: any selector matching every
    BGP node is all() by its effect, at every severity."""
    cluster = _labelled_cluster()
    like = "" if every == "all()" else " (like all())"
    for mesh in (
        bgppeer("mesh", nodeSelector=every, peerSelector=every),
        bgppeer("mesh", peerSelector=every),  # no nodeSelector: every node
    ):
        (f,) = of(findings(cluster, mesh), "all-selectors")
        assert f.severity is Severity.ERROR and "a full mesh in all but name" in f.message
        assert f"spec.peerSelector {every!r} selects every BGP node{like}, and so" in f.message
        assert "is all()" not in f.message
    subset = bgppeer("edge", nodeSelector="has(edge)", peerSelector=every)
    (g,) = of(findings(cluster, subset), "all-selectors")
    assert g.severity is Severity.WARNING and "each of the 3 local nodes" in g.message
    assert f"spec.peerSelector {every!r} selects every BGP node{like}, from" in g.message
    recipe = bgppeer("to-edge", nodeSelector=every, peerSelector="has(edge)")
    (h,) = of(findings(cluster, recipe), "all-selectors")
    assert h.severity is Severity.INFO and "peer with the 3 nodes" in h.message
    assert f"spec.nodeSelector {every!r} selects every BGP node{like}:" in h.message


@pytest.mark.parametrize(
    "subset",
    [
        "has(edge)",
        "a == 'x' || has(edge)",
        "has(rack)",  # half of the nodes
        "!has(edge)",  # all but three
        "has(kubernetes.io/os) && !has(edge)",
        "all() && has(edge)",
    ],
)
def test_a_selector_matching_a_subset_is_not_all(subset: str) -> None:
    cluster = _labelled_cluster()
    narrow = bgppeer("narrow", nodeSelector=subset, peerSelector=subset)
    assert of(findings(cluster, narrow), "all-selectors") == []
    by_name = bgppeer("one", node="n0005", peerSelector=subset)
    assert of(findings(cluster, by_name), "all-selectors") == []


# -- both API groups -------------------------------------------------------------------


def _mixed(group: str) -> list[dict[str, Any]]:
    docs = [d for d in rr_cluster(120, group=group) if d["kind"] != "Deployment"]
    docs[0] = k8s_node(0, cid="244.0.0.1", labels={RR: "true"}, zone="a")
    docs += [
        k8s_node(500, labels={"role": "other"}),
        ippool("p", group, ipipMode="Always", natOutgoing=True),
        bgppeer("all", group, nodeSelector="role == 'other'", peerSelector="all()"),
        typha(2),
    ]
    return docs


def test_both_api_groups_give_the_same_findings() -> None:
    v1 = findings(_mixed(V1))
    v3 = findings(_mixed(V3))
    assert v1 == v3
    assert {f.id for f in v1} == {"encap-always", "nat-outgoing", "typha-replicas", "all-selectors"}


def test_with_both_groups_present_calico_reads_crd_projectcalico_org() -> None:
    # v1 says mesh off (no finding); a differing v3 copy says mesh on: v1 wins.
    docs = as_list(mesh_nodes(120), bgpconfig(False, V1), bgpconfig(True, V3))
    inv = inventory_from_documents(docs)
    assert inv.api_group == f"{V1} + {V3}"
    (note,) = [n for n in inv.notes if "both API groups" in n]
    assert "BGPConfiguration default" in note and "specs differ" in note
    assert of(diagnose(inv), "mesh-at-scale") == []
    only_v3 = inventory_from_documents(as_list(mesh_nodes(120), bgpconfig(True, V3)))
    assert only_v3.api_group == V3 and of(diagnose(only_v3), "mesh-at-scale") != []


def test_a_dump_of_both_groups_reads_each_object_once() -> None:
    # calico-apiserver: every Calico object listed under both groups, same spec.
    one = [d for d in _mixed(V1) if d["apiVersion"] == V1]
    twice = _mixed(V1) + [{**d, "apiVersion": V3} for d in one]
    inv = inventory_from_documents(as_list(twice))
    assert [p.name for p in inv.state.peers] == ["all", "clients", "rr-mesh"]
    assert [p.name for p in inv.pools] == ["p"]
    notes = [n for n in inv.notes if "both API groups" in n]
    assert len(notes) == len(one) and all("same spec" in n for n in notes)
    assert findings(twice) == findings(_mixed(V1))
    # A v3-only object next to v1 ones is read too (one group only: nothing to merge).
    extra = bgppeer("extra", V3, nodeSelector="role == 'other'", peerSelector=f"has({RR})")
    assert "extra" in [p.name for p in inventory_from_documents(as_list(twice, extra)).state.peers]


def test_the_same_object_twice_in_one_group_is_refused() -> None:
    for group in (V1, V3):
        for dup in (
            bgpconfig(False, group),
            ippool("p", group),
            bgppeer("x", group, peerIP="1.2.3.4"),
        ):
            with pytest.raises(InputError, match=f"duplicate {dup['kind']}") as err:
                inventory_from_documents(as_list(mesh_nodes(2), dup, dup))
            assert "first seen as item 3 of input, again as item 4 of input" in str(err.value)


def test_typed_lists_and_single_documents_are_accepted() -> None:
    docs: list[Any] = [
        {
            "apiVersion": "v1",
            "kind": "NodeList",
            "items": [{"metadata": n["metadata"]} for n in mesh_nodes(101)],
        },
        ippool(ipipMode="Always"),
        None,
    ]
    found = diagnose(inventory_from_documents(docs))
    assert {"mesh-at-scale", "encap-always", "typha-missing"} <= {f.id for f in found}


def test_output_is_sorted_deterministically() -> None:
    found = findings(_mixed(V1))
    assert found == sorted(found, key=Finding.sort_key)
    ranks = [["error", "warning", "info"].index(f.severity.value) for f in found]
    assert ranks == sorted(ranks)
    assert findings(list(reversed(_mixed(V1)))) == found


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("items: [\n  - a: 1\n", "invalid YAML at line"),
        ("just a string\n", "expected a Kubernetes object or List"),
        ("- 1\n- 2\n", "expected a Kubernetes object or List, got a list"),
        ("apiVersion: v1\nkind: List\nitems: {a: 1}\n", "field items: must be a list"),
        (
            "apiVersion: v1\nkind: List\nitems: [3]\n",
            "item 1 of DUMP: expected a Kubernetes object",
        ),
        ("apiVersion: v1\nitems: []\n", "document 1 of DUMP field kind: missing"),
        ("apiVersion: v1\nkind: List\nitems: []\n", "no Node objects"),
        (
            f"apiVersion: v1\nkind: List\nitems:\n- {{apiVersion: v1, kind: Node, metadata: "
            f"{{name: a}}}}\n- {{apiVersion: {V1}, kind: IPPool, metadata: {{name: p}}, "
            "spec: {cidr: 10.0.0.0/8, ipipMode: Sometimes}}\n",
            "IPPool p field spec.ipipMode: must be one of Never, Always, CrossSubnet",
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Node, metadata: "
            "{name: a}}\n- {apiVersion: apps/v1, kind: Deployment, metadata: {name: calico-typha"
            ", namespace: x}, spec: {replicas: many}}\n",
            "Deployment x/calico-typha field spec.replicas",
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Node, metadata: "
            f"{{name: a, annotations: {{{ANN_IPV4}: not-an-ip}}}}}}\n",
            "Node a field",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, text: str, expected: str) -> None:
    dump = tmp_path / "bad.yaml"
    dump.write_text(text)
    result = runner.invoke(app, ["doctor", "--resources", str(dump), "--json"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("calico-rr: error: ")
    assert expected.replace("DUMP", str(dump)) in lines[0]


def test_bad_flags_exit_2(tmp_path: Path) -> None:
    dump = tmp_path / "ok.yaml"
    dump.write_text(mesh_dump_yaml(3))
    both = runner.invoke(app, ["doctor", "--resources", str(dump), "--kubeconfig", str(dump)])
    assert both.exit_code == 2 and "not both" in both.stderr
    budget = runner.invoke(app, ["doctor", "--resources", str(dump), "--session-budget", "0"])
    assert budget.exit_code == 2 and "--session-budget" in budget.stderr
    missing = runner.invoke(app, ["doctor", "--resources", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_diagnose_rejects_a_budget_below_one() -> None:
    inv = inventory_from_documents(as_list(mesh_nodes(2)))
    with pytest.raises(InputError, match="session-budget"):
        diagnose(inv, session_budget=0)


def test_a_dump_is_read_as_the_release_its_cluster_information_records() -> None:
    info = {
        "apiVersion": V1,
        "kind": "ClusterInformation",
        "metadata": {"name": "default"},
        "spec": {"calicoVersion": "v3.28.1"},
    }
    inv = inventory_from_documents(as_list(*rr_cluster(5), info))
    assert "read as Calico v3.28.1, the release ClusterInformation default records" in inv.notes
    assert not any(n.startswith("ignored") and "ClusterInformation" in n for n in inv.notes)


def distinct_id_mesh(clients: int, rrs: int) -> list[dict[str, Any]]:
    """``rr_cluster`` with one cluster ID per RR: the RRs treat each other as clients."""
    docs = rr_cluster(clients, rrs)
    for i in range(rrs):
        docs[i] = k8s_node(i, cid=f"244.0.0.{i + 1}", labels={RR: "true"})
    return docs


def test_add_path_fanout_of_a_mesh_of_distinct_cluster_ids() -> None:
    # 6 RRs, every client on all of them: 6 x (1 + 5 x 65) = 1956 paths per prefix
    found = of(findings(distinct_id_mesh(200, 6)), "add-path-fanout")
    assert [f.severity for f in found] == [Severity.WARNING]
    assert "1,956 paths for one prefix" in found[0].message
    assert "over the budget of 200,000" in found[0].message
    # 3 RRs: 15 paths per prefix, about 3,000 routes per node
    assert of(findings(distinct_id_mesh(200, 3)), "add-path-fanout") == []
    # one shared cluster ID: no chains at all
    assert of(findings(rr_cluster(200, 6)), "add-path-fanout") == []
