"""Issue 3 acceptance: our topologies are proven, broken hand-written ones are caught.

Everything goes through Calico resources -> parse_resources -> build_session_graph
-> verify, the way a user's configuration would.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from calico_rr.cli import app
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.bgp.verify.report import verify
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import plan_graph

V1 = "crd.projectcalico.org/v1"


def knode(name: str, ip: str, labels: dict[str, str], cid: str | None = None) -> dict[str, Any]:
    ann = {"projectcalico.org/IPv4Address": f"{ip}/24"}
    if cid:
        ann["projectcalico.org/RouteReflectorClusterID"] = cid
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": ann},
    }


def peer(name: str, node_sel: str, peer_sel: str) -> dict[str, Any]:
    return {
        "apiVersion": V1,
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"nodeSelector": node_sel, "peerSelector": peer_sel},
    }


MESH_OFF = {
    "apiVersion": V1,
    "kind": "BGPConfiguration",
    "metadata": {"name": "default"},
    "spec": {"nodeToNodeMeshEnabled": False},
}


def two_rr_config(shared_id: bool, clients: int = 6) -> list[dict[str, Any]]:
    """RR a and RR b peer each other; clients c0..c{n-1} alternate between them."""
    docs = [
        knode("rr-a", "10.0.0.1", {"rr": "a"}, "9.9.9.9"),
        knode("rr-b", "10.0.0.2", {"rr": "b"}, "9.9.9.9" if shared_id else "9.9.9.10"),
    ]
    for i in range(clients):
        docs.append(knode(f"c{i}", f"10.0.1.{i + 1}", {"home": "a" if i % 2 == 0 else "b"}))
    docs += [
        peer("rr-mesh", "has(rr)", "has(rr)"),
        peer("home-a", "home == 'a'", "rr == 'a'"),
        peer("home-b", "home == 'b'", "rr == 'b'"),
        MESH_OFF,
    ]
    return docs


def graph_of(docs: list[dict[str, Any]]) -> Any:
    return build_session_graph(parse_resources(docs).state)


def test_shared_cluster_id_with_split_clients_is_unreachable() -> None:
    report = verify(graph_of(two_rr_config(shared_id=True)), examples=100)
    assert not report.reachable
    # clients of a (c0 c2 c4) and of b (c1 c3 c5) miss each other: 3 x 3 x 2 pairs
    expected = {
        (x, y)
        for x, y in itertools.permutations([f"c{i}" for i in range(6)], 2)
        if int(x[1]) % 2 != int(y[1]) % 2
    }
    assert report.missing_pairs == len(expected) == 18
    assert set(report.missing_examples) == expected


def test_distinct_ids_reachable_but_not_single_rr_tolerant() -> None:
    report = verify(graph_of(two_rr_config(shared_id=False)))
    assert report.reachable
    assert report.missing_pairs == 0
    assert not report.single_rr_failure_tolerant
    assert report.worst_single_rr_failure is not None


def proposal_quorum(clients: int = 60) -> list[dict[str, Any]]:
    """The proposal's table taken literally: 13 RRs under ONE cluster ID, every
    client on a 3-subset of them (quorums handed out in order)."""
    docs = [knode(f"rr{i:02d}", f"10.0.0.{i + 1}", {"rr": f"r{i}"}, "9.9.9.9") for i in range(13)]
    subsets = list(itertools.combinations(range(13), 3))
    docs.append(peer("rr-mesh", "has(rr)", "has(rr)"))
    used = set()
    for i in range(clients):
        q = subsets[(i * 37) % len(subsets)]
        used.add(q)
        docs.append(
            knode(
                f"c{i:03d}", f"10.0.{1 + i // 200}.{i % 200 + 1}", {"q": f"q{q[0]}-{q[1]}-{q[2]}"}
            )
        )
    for q in sorted(used):
        name = f"q{q[0]}-{q[1]}-{q[2]}"
        docs.append(peer(name, f"q == '{name}'", "rr in {" + ",".join(f"'r{j}'" for j in q) + "}"))
    docs.append(MESH_OFF)
    return docs


def test_proposal_quorum_taken_literally_is_broken() -> None:
    report = verify(graph_of(proposal_quorum()))
    assert not report.reachable
    assert report.missing_pairs > 0


def test_our_quorum_is_correct() -> None:
    p = plan(synthetic_cluster(2000, zones=3), PlanConfig(topology="quorum", rrs=13))
    report = verify(plan_graph(p), fail_rrs=2)
    assert report.reachable and report.single_rr_failure_tolerant
    assert report.max_cluster_list == 2


SIZES = [5, 50, 500, 2000, 5000]


@pytest.mark.parametrize("nodes", SIZES)
@pytest.mark.parametrize("zones", [0, 3])
@pytest.mark.parametrize("topology", ["single", "multi", "quorum", "hierarchy", "auto"])
def test_every_topology_verifies(topology: str, zones: int, nodes: int) -> None:
    # single cluster at 2000+ nodes is oversized (sessions per RR), but valid BGP: verify it too
    racks = 10 if topology == "hierarchy" and nodes >= 2000 else 0
    p = plan(synthetic_cluster(nodes, zones=zones, racks=racks), PlanConfig(topology=topology))  # type: ignore[arg-type]
    graph = plan_graph(p)
    zone_members: dict[str, list[int]] = {}
    if zones:
        for i, n in enumerate(graph.nodes):
            zone_members.setdefault(n.labels["topology.kubernetes.io/zone"], []).append(i)
    report = verify(graph, fail_zones=zone_members or None)
    assert report.reachable, (report.missing_pairs, report.missing_examples[:3])
    assert report.single_rr_failure_tolerant, report.worst_single_rr_failure
    assert not report.loops
    if nodes >= 50 and zones:
        for name, zf in report.zone_failure.items():
            assert zf.tolerant, (name, zf.missing_pairs)


runner = CliRunner()


def test_cli_verify_resources_file_unreachable_exit_1(tmp_path: Path) -> None:
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump_all(two_rr_config(shared_id=True)))
    result = runner.invoke(app, ["verify", "--resources", str(f), "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["reachable"] is False
    assert data["missing_pairs"] == 18
    for key in ("single_rr_failure_tolerant", "max_cluster_list", "updates_per_rr"):
        assert key in data
    assert set(data["updates_per_rr"]) == {"min", "mean", "max"}


def test_cli_verify_synthetic_ok_exit_0() -> None:
    result = runner.invoke(
        app, ["verify", "--nodes", "300", "--zones", "3", "--topology", "multi", "--fail-rrs", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "reachability: OK" in result.stdout


def test_cli_verify_bad_selector_exit_2(tmp_path: Path) -> None:
    docs = two_rr_config(shared_id=False)
    docs.append(peer("broken", "home == ", "has(rr)"))
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    result = runner.invoke(app, ["verify", "--resources", str(f)])
    assert result.exit_code == 2
    assert "BGPPeer broken" in result.stderr


def test_cli_verify_unknown_zone_exit_2() -> None:
    result = runner.invoke(app, ["verify", "--nodes", "30", "--zones", "2", "--fail-zone", "mars"])
    assert result.exit_code == 2
    assert "mars" in result.stderr
