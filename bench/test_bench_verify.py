"""Verifier benchmarks (issue 3): goals - fast engine on a 5000-node hierarchy,
reachability plus every single-RR failure, under 5 s; exact engine on 300 nodes
under 30 s.  Recorded in docs/PERFORMANCE.md.  Nothing here fails on time."""

from __future__ import annotations

from typing import Any

import pytest

from calico_rr.core.bgp.verify import verify
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import plan_graph


def _graph(nodes: int, topology: str, zones: int = 3, racks: int = 0) -> Any:
    p = plan(synthetic_cluster(nodes, zones=zones, racks=racks), PlanConfig(topology=topology))  # type: ignore[arg-type]
    return plan_graph(p)


def test_fast_5000_hierarchy_with_single_rr_failures(benchmark: Any) -> None:
    graph = _graph(5000, "hierarchy", racks=10)
    report = benchmark.pedantic(lambda: verify(graph, engine="fast"), rounds=3, iterations=1)
    assert report.reachable and report.single_rr_failure_tolerant


@pytest.mark.parametrize("topology", ["multi", "quorum"])
def test_fast_5000_other_topologies(benchmark: Any, topology: str) -> None:
    graph = _graph(5000, topology)
    report = benchmark.pedantic(lambda: verify(graph, engine="fast"), rounds=1, iterations=1)
    assert report.reachable


@pytest.mark.parametrize("topology", ["multi", "hierarchy"])
def test_exact_300(benchmark: Any, topology: str) -> None:
    graph = _graph(300, topology, racks=3 if topology == "hierarchy" else 0)
    report = benchmark.pedantic(lambda: verify(graph, engine="exact"), rounds=1, iterations=1)
    assert report.reachable
