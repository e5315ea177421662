"""Verifier benchmarks (issues 3 and 18), recorded in docs/PERFORMANCE.md.

Goals: the fast engine verifies every topology at 5000 nodes, reachability plus
every single-RR failure, in at most 1 s in process; a 50,000-node hierarchy in at
most 10 s; the exact engine a 1000-node cluster in at most 60 s.  Each case also
checks the verdict, so a fast wrong answer cannot pass.  Nothing here fails on time.
"""

from __future__ import annotations

from typing import Any

import pytest

from calico_rr.core.bgp.verify.report import verify
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import plan_graph

TOPOLOGIES = ["single", "multi", "quorum", "hierarchy"]


def _graph(nodes: int, topology: str, zones: int = 3, racks: int = 0) -> Any:
    p = plan(synthetic_cluster(nodes, zones=zones, racks=racks), PlanConfig(topology=topology))  # type: ignore[arg-type]
    return plan_graph(p)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_fast_5000_with_single_rr_failures(benchmark: Any, topology: str) -> None:
    graph = _graph(5000, topology, racks=10)
    report = benchmark.pedantic(lambda: verify(graph, engine="fast"), rounds=5, iterations=1)
    assert report.reachable and report.single_rr_failure_tolerant


def test_fast_50000_hierarchy(benchmark: Any) -> None:
    graph = _graph(50_000, "hierarchy", racks=100)
    report = benchmark.pedantic(lambda: verify(graph, engine="fast"), rounds=3, iterations=1)
    assert report.reachable and report.single_rr_failure_tolerant


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_exact_1000(benchmark: Any, topology: str) -> None:
    graph = _graph(1000, topology, racks=3)
    report = benchmark.pedantic(lambda: verify(graph, engine="exact"), rounds=1, iterations=1)
    assert report.reachable and report.single_rr_failure_tolerant


def test_fast_5000_dual_stack_hierarchy(benchmark: Any) -> None:
    """Issue 17: both families of a 5000-node dual-stack hierarchy, every single-RR
    failure in each: the two projections, their session graphs and verifications."""
    from calico_rr.core.bgp.verify.families import verify_families
    from calico_rr.core.report.summary import plan_state

    nodes = synthetic_cluster(5000, zones=3, racks=10, ip_family="dual")
    state = plan_state(plan(nodes, PlanConfig(topology="hierarchy")))
    report = benchmark.pedantic(
        lambda: verify_families(state, engine="fast"), rounds=5, iterations=1
    )
    assert [f.family for f in report.families] == ["ipv4", "ipv6"]
    assert all(f.report.nodes == 5000 for f in report.families)
    assert report.reachable and report.combined().single_rr_failure_tolerant
