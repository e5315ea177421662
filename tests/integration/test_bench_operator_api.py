"""bench/operator_api.py at a small size: the operator's API cost targets hold.

A real kube-apiserver + etcd (audit log on) and the operator as a subprocess;
200 nodes, 3 single joins, a burst of 100.  The topology is forced to ``multi``
so that every join costs a node write (in ``single``, which auto picks at this
size, a client needs none and the write path would not be exercised).  Timing
is not asserted (shared 2-CPU machines); docs/PERFORMANCE.md has the numbers.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "operator_api.py"
NODES, JOINS, BURST = 200, 3, 100


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_operator_api", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    bench = _load()
    out: dict[str, Any] = bench.run_bench(
        nodes=NODES, zones=3, joins=JOINS, burst=BURST, topology="multi", timeout=120.0
    )
    return out


def test_converges_with_the_mesh_off(result: dict[str, Any]) -> None:
    final = result["final_status"]
    assert final["phase"] == "Steady"
    assert final["meshEnabled"] is False
    assert final["topology"] == "multi"
    assert result["initial_sync"]["writes"] >= NODES  # every node got its label


def test_a_join_costs_at_most_three_writes(result: dict[str, Any]) -> None:
    joins = result["join"]["each"]
    assert len(joins) == JOINS
    for join in joins:
        assert 1 <= join["writes"] <= 3, join
        assert f"patch nodes {join['node']}" in join["write_list"], join
        assert join["start"] == "audit: admin create"
        assert join["latency_s"] > 0
    assert result["join"]["writes_max"] <= 3


def test_no_list_after_the_initial_sync(result: dict[str, Any]) -> None:
    assert result["after_sync"]["lists"] == 0, result["after_sync"]


def test_a_burst_is_coalesced(result: dict[str, Any]) -> None:
    burst = result["burst_result"]
    assert burst["nodes"] == BURST
    assert 1 <= burst["reconciles"] < BURST / 5, burst
    # each joining client is labelled once, nothing else is rewritten
    assert BURST <= burst["writes"] <= BURST + 5, burst


def test_operator_memory(result: dict[str, Any]) -> None:
    memory = result["memory"]
    assert memory["samples"] > 0
    assert 0 < memory["rss_peak_mb"] < 200, memory


def test_fatal_targets_are_met(result: dict[str, Any]) -> None:
    missed = [t for t in result["targets"] if t["fatal"] and not t["ok"]]
    assert not missed, missed
