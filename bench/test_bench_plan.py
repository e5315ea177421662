"""Planner benchmarks: plan + render in-process at 500, 5000 and 50,000 nodes.

Goal (issue 2): 5000 nodes under 0.2 s, 50,000 under 2 s.  Run with
``make bench``; results are recorded in docs/PERFORMANCE.md with the machine.
These are benchmarks, not tests: nothing here fails on time.
"""

from __future__ import annotations

from typing import Any

import pytest

from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import plan_graph

CASES = [
    (500, 3, 0, "auto"),
    (5000, 3, 10, "hierarchy"),
    (5000, 3, 0, "multi"),
    (50_000, 3, 100, "hierarchy"),
]


@pytest.mark.parametrize(("nodes", "zones", "racks", "topology"), CASES)
def test_plan_and_render(benchmark: Any, nodes: int, zones: int, racks: int, topology: str) -> None:
    cluster = synthetic_cluster(nodes, zones=zones, racks=racks)
    config = PlanConfig(topology=topology)  # type: ignore[arg-type]

    def run() -> int:
        p = plan(cluster, config)
        return len(p.resources())

    docs = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert docs > 0


@pytest.mark.parametrize("nodes", [5000, 50_000])
def test_session_graph_from_rendered(benchmark: Any, nodes: int) -> None:
    """The metrics path: render -> parse as calico-node -> session graph."""
    p = plan(
        synthetic_cluster(nodes, zones=3, racks=nodes // 500), PlanConfig(topology="hierarchy")
    )
    graph = benchmark.pedantic(lambda: plan_graph(p), rounds=3, iterations=1)
    assert len(graph.nodes) == nodes
