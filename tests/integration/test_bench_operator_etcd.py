"""bench/operator_etcd.py at a small size: the operator's etcd cost targets hold.

A real etcd with client-certificate TLS and ``calico-rr run --datastore-type
etcdv3`` as a subprocess; 200 nodes, 3 single joins, a burst of 100.  The topology
is forced to ``multi`` so that every join costs a node write (in ``single``, which
auto picks at this size, a client needs none).  Request counts are etcd's own
(``grpc_server_started_total``) minus the benchmark's requests.  Timing is not
asserted (shared 2-CPU machines); docs/PERFORMANCE.md has the numbers.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "operator_etcd.py"
NODES, JOINS, BURST = 200, 3, 100


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_operator_etcd", SCRIPT)
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
    sync = result["initial_sync"]
    assert sync["writes"] >= NODES  # every node got its label (compare-and-swap Txns)
    # one LIST per cache (6 prefixes, one page each at this size), one watch each
    assert sync["requests_by_method"]["Watch"] == 6, sync


def test_a_join_costs_one_etcd_write(result: dict[str, Any]) -> None:
    joins = result["join"]["each"]
    assert len(joins) == JOINS
    for join in joins:
        assert join["writes"] == 1, join  # etcd's count
        assert join["write_list"] == [f"put nodes {join['node']}"], join  # the observer's
        assert join["reads_not_leader"] == 0 and join["watches"] == 0, join
        assert join["start"] == "observer: node created"
        assert join["latency_s"] > 0
    assert result["join"]["writes_max"] <= 3


def test_no_read_after_the_initial_sync(result: dict[str, Any]) -> None:
    after = result["after_sync"]
    assert after["lists"] == 0 and after["watches"] == 0, after
    assert after["operator_counted_lists"] == 0, after
    assert after["requests_by_method"].get("Range", 0) == after["leader_keepalives"], after


def test_a_burst_is_coalesced(result: dict[str, Any]) -> None:
    burst = result["burst_result"]
    assert burst["nodes"] == BURST
    assert 1 <= burst["reconciles"] < BURST / 5, burst
    # each joining client is labelled once, nothing else is rewritten
    assert BURST <= burst["writes"] <= BURST + 5, burst
    assert burst["writes_seen"] == burst["writes"], burst  # no compare-and-swap failed


def test_operator_memory(result: dict[str, Any]) -> None:
    memory = result["memory"]
    assert memory["samples"] > 0
    assert 0 < memory["rss_peak_mb"] < 200, memory


def test_fatal_targets_are_met(result: dict[str, Any]) -> None:
    missed = [t for t in result["targets"] if t["fatal"] and not t["ok"]]
    assert not missed, missed
