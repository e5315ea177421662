"""The add-path fan-out (core.bgp.verify.fanout) against the exact engine's path
listing, the multi layout's closed form against both, and ``auto`` keeping
clear of layouts whose add-path tables would not fit a node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import SessionGraph, build_session_graph
from calico_rr.core.bgp.verify import exact
from calico_rr.core.bgp.verify.fanout import ROUTES_PER_NODE_BUDGET, fanout, path_counts
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.planning.topologies import multi
from calico_rr.core.report.summary import plan_state
from calico_rr.testing.random_configs import random_config

POOL = [(f"n{i:02d}", f"10.0.0.{i + 1}") for i in range(20)]


def listed(graph: SessionGraph, origin: int) -> list[int]:
    return [
        0 if x == origin else len(exact.paths(graph, origin, x, limit=10**6))
        for x in range(len(graph.nodes))
    ]


def planned(nodes: int, topology: str, rrs: int | None = None, redundancy: int = 3) -> SessionGraph:
    config = PlanConfig(topology=topology, rrs=rrs, redundancy=redundancy)
    return build_session_graph(plan_state(plan(synthetic_cluster(nodes, zones=1), config)))


@pytest.mark.parametrize("seed", range(40))
def test_counts_equal_the_listed_paths_on_random_configurations(seed: int) -> None:
    # the extended generator: two AS numbers, global and manual BGPPeers, the mesh
    # beside RRs, shared and distinct cluster IDs
    docs = random_config(seed, POOL, min_nodes=8, max_nodes=14, extended=True)
    graph = build_session_graph(parse_resources(docs).state)
    for origin in range(len(graph.nodes)):
        assert path_counts(graph, origin) == (listed(graph, origin), False)


@pytest.mark.parametrize(
    ("topology", "rrs"),
    [
        ("single", None),
        ("multi", 3),
        ("multi", 5),
        ("multi", 6),
        ("quorum", 9),
        ("hierarchy", None),
    ],
)
def test_counts_equal_the_listed_paths_on_planned_layouts(topology: str, rrs: int | None) -> None:
    graph = planned(20, topology, rrs)
    totals = [0] * len(graph.nodes)
    for origin in range(len(graph.nodes)):
        counts, stopped = path_counts(graph, origin)
        assert not stopped
        assert counts == listed(graph, origin)
        totals = [t + c for t, c in zip(totals, counts, strict=True)]
    # one origin per class, weighted, gives the busiest node's whole table exactly
    found = fanout(graph)
    assert found is not None and not found.at_least
    assert found.routes_per_node == max(totals)


@pytest.mark.parametrize("rrs", range(1, 8))
@pytest.mark.parametrize("redundancy", [1, 2, 3])
def test_multi_closed_form_is_the_counted_worst_case(rrs: int, redundancy: int) -> None:
    found = fanout(planned(12 * rrs, "multi", rrs, redundancy))
    assert found is not None
    assert found.paths_per_prefix == multi.paths_per_prefix(rrs, redundancy)


def test_multi_closed_form_values() -> None:
    # BIRD 1.6.8 held 15 paths per prefix on an 8-node, 3-RR multi lab (docs/LAB.md)
    assert multi.paths_per_prefix(3, 3) == 15
    # the planner's auto choice at 1000 nodes in 3 zones was 9 RRs
    assert multi.paths_per_prefix(9, 3) == 9 * 13700


def test_counting_stops_at_the_limit_and_says_so() -> None:
    found = fanout(planned(120, "multi", 9), limit=1000)
    assert found is not None and found.at_least
    assert found.paths_per_prefix > 1000 or found.routes_per_node > 1000
    assert found.over_budget is (found.routes_per_node > ROUTES_PER_NODE_BUDGET)
    assert found.to_dict()["at_least"] is True


def test_auto_leaves_out_a_multi_layout_whose_table_is_too_big() -> None:
    # 1000 nodes: multi needs 6 RRs for the session budget: 585 paths per prefix
    p = plan(synthetic_cluster(1000, zones=3), PlanConfig())
    assert p.layout.topology == "hierarchy"
    assert p.auto_reason is not None and "add-path" in p.auto_reason
    # 700 nodes in one zone: 5 RRs fit both budgets (129 paths x 700 nodes)
    p = plan(synthetic_cluster(700, zones=1), PlanConfig())
    assert (p.layout.topology, len(p.layout.holders)) == ("multi", 5)
    assert not any("add-path" in w for w in p.warnings)
    graph = build_session_graph(plan_state(p))
    found = fanout(graph)
    assert found is not None and not found.over_budget


def test_explicit_multi_warns_when_the_table_is_too_big() -> None:
    big = plan(synthetic_cluster(1000, zones=3), PlanConfig(topology="multi"))
    assert len(big.layout.holders) == 6
    assert any("585 paths per prefix" in w for w in big.warnings), big.warnings
    # the operator reports such a layout Degraded (adapters/controller.py)
    assert [w for w in big.degrading if "585 paths per prefix" in w]
    small = plan(synthetic_cluster(1000, zones=3), PlanConfig(topology="multi", rrs=3))
    assert not any("paths per prefix" in w for w in small.warnings)
    assert small.degrading == ()


def test_plan_summary_counts_the_table_and_warns_for_quorum_too() -> None:
    from calico_rr.core.report.summary import summarize

    quorum = summarize(plan(synthetic_cluster(2000, zones=3), PlanConfig(topology="quorum")))
    assert quorum["cluster_ids"] == 4
    assert quorum["add_path"]["routes_per_node"] > ROUTES_PER_NODE_BUDGET
    assert any("add-path routes" in w for w in quorum["warnings"])
    hierarchy = summarize(plan(synthetic_cluster(2000, zones=3), PlanConfig()))
    assert hierarchy["topology"] == "hierarchy"
    assert 0 < hierarchy["add_path"]["routes_per_node"] <= ROUTES_PER_NODE_BUDGET
    assert not hierarchy["warnings"]
    # one cluster ID: nothing chains through reflectors, nothing counted
    assert summarize(plan(synthetic_cluster(300, zones=3), PlanConfig()))["add_path"] is None


def test_verify_and_doctor_count_the_table_plan_counts(tmp_path: Path) -> None:
    """``verify`` reports the add-path table ``plan`` reports (for a plan and for its
    rendered resources), says so in its text, and warns past the budget like
    ``doctor``; under one cluster ID nothing is counted."""
    import json

    from typer.testing import CliRunner

    from calico_rr.cli import app

    def run(*args: str) -> Any:
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code in (0, 1), result.output
        return result.output

    args = ["--nodes", "120", "--zones", "3", "--topology", "multi", "--rrs", "9"]
    planned_table = json.loads(run("plan", *args, "-o", "json"))["add_path"]
    assert planned_table["routes_per_node"] > ROUTES_PER_NODE_BUDGET, planned_table
    assert json.loads(run("verify", *args, "-o", "json"))["add_path"] == planned_table
    resources = tmp_path / "resources.yaml"
    run("render", *args, "--include-nodes", "--force", "--output-file", str(resources))
    checked = json.loads(run("verify", "--resources", str(resources), "-o", "json"))
    assert checked["add_path"] == planned_table
    text = run("verify", "--resources", str(resources))
    assert f"add-path: {planned_table['holder']}'s BIRD would hold" in text
    assert "over the 200,000 budget" in text
    assert "add-path-fanout" in run("doctor", "--resources", str(resources), "-o", "json")
    one_id = ["--nodes", "120", "--zones", "3", "--topology", "single"]
    assert json.loads(run("verify", *one_id, "-o", "json"))["add_path"] is None
    assert "add-path" not in run("verify", *one_id)
