"""``--ip-family`` on plan and verify, the per-family JSON, IPv6-only node files
(issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from calico_rr.cli import app
from calico_rr.core.formats.kube import node_to_k8s
from calico_rr.core.planning.synthetic import synthetic_cluster

runner = CliRunner()


def test_plan_dual_json_has_sessions_per_family() -> None:
    result = runner.invoke(app, ["plan", "--nodes", "40", "--ip-family", "dual", "-o", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data["families"]) == ["ipv4", "ipv6"]
    for family in data["families"].values():
        assert family["nodes"] == 40
        assert family["total_sessions"] == data["total_sessions"]
        assert family["sessions_per_rr"]["max"] > 0
        assert family["nodes_without_address"] == []
    assert data["verification"]["reachable"] and data["safety"]["ok"]
    assert list(data["verification"]["families"]) == ["ipv4", "ipv6"]


def test_verify_dual_json_and_table() -> None:
    result = runner.invoke(app, ["verify", "--nodes", "30", "--ip-family", "dual", "-o", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    v4, v6 = data["families"]["ipv4"], data["families"]["ipv6"]
    assert v4["reachable"] and v6["reachable"]
    assert data["sessions"] == v4["sessions"] + v6["sessions"]
    table = runner.invoke(app, ["verify", "--nodes", "30", "--ip-family", "dual"])
    assert table.exit_code == 0
    assert "IPv4:" in table.stdout and "IPv6:" in table.stdout
    plain = runner.invoke(app, ["verify", "--nodes", "30"])
    assert "IPv4:" not in plain.stdout  # an IPv4-only table reads as before


def test_ipv6_only_plan_and_verify() -> None:
    result = runner.invoke(app, ["verify", "--nodes", "20", "--ip-family", "ipv6", "-o", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data["families"]) == ["ipv6"] and data["nodes"] == 20
    plan = runner.invoke(app, ["plan", "--nodes", "20", "--ip-family", "ipv6"])
    assert plan.exit_code == 0 and "IPv6: BGP nodes" in plan.stdout


def test_bad_ip_family_and_misplaced_flag_are_input_errors(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["plan", "--nodes", "5", "--ip-family", "ipv5"])
    assert bad.exit_code == 2 and "--ip-family" in bad.stderr
    nodes = tmp_path / "nodes.yaml"
    items = [node_to_k8s(n) for n in synthetic_cluster(5)]
    nodes.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "NodeList", "items": items}))
    misplaced = runner.invoke(app, ["plan", "--nodes-file", str(nodes), "--ip-family", "dual"])
    assert misplaced.exit_code == 2 and "synthetic" in misplaced.stderr


def test_a_node_file_with_some_nodes_lacking_ipv6_fails_verify_precisely(
    tmp_path: Path,
) -> None:
    cluster = synthetic_cluster(12, ip_family="dual", ipv4_only=0.25)
    lacking = sorted(n.name for n in cluster if n.ip6 is None)
    assert len(lacking) == 3
    items = [node_to_k8s(n) for n in cluster]
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "NodeList", "items": items}))
    result = runner.invoke(app, ["verify", "--nodes-file", str(nodes), "-o", "json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["families"]["ipv4"]["reachable"]
    v6 = data["families"]["ipv6"]
    assert not v6["reachable"] and v6["nodes_without_address"] == lacking
    assert v6["missing_pairs"] == 12 * 11 - 9 * 8
    assert not data["reachable"]
    # the plan itself is safe: a node without IPv6 is not cut off by it
    plan = runner.invoke(app, ["plan", "--nodes-file", str(nodes), "-o", "json"])
    assert plan.exit_code == 0, plan.output
    summary = json.loads(plan.stdout)
    assert summary["families"]["ipv6"]["nodes_without_address"] == lacking
