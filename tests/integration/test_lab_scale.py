"""``calico-rr lab --scale`` at 200 nodes (issue 18): the scale mode kept from rotting.

One cold start of the planner's hierarchy on 200 real BIRDs, as a user runs it
(the CLI, JSON on stdout): every session up, every node's table equal to the
verifier's prediction, the measurements present and plausible, the busiest RR
crashed and stopped without a sampled client losing a route, and the host's
neighbour-table limits put back afterwards.  The curves up to 1000 nodes are
``bench/lab_scale.py`` (docs/PERFORMANCE.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calico_rr.sandbox.lab_tools import ensure_lab_tools

pytestmark = pytest.mark.integration

NEIGH = Path("/proc/sys/net/ipv4/neigh/default")
NODES = 200


def _limits() -> list[str]:
    return [(NEIGH / k).read_text().strip() for k in ("gc_thresh1", "gc_thresh2", "gc_thresh3")]


@pytest.fixture(scope="module")
def result() -> dict[str, object]:
    ensure_lab_tools()  # installs BIRD when missing (CI); fails, never skips
    before = _limits()
    cmd = [sys.executable, "-m", "calico_rr.cli", "lab", "--scale", "--nodes", str(NODES)]
    cmd += ["--topology", "hierarchy", "-o", "json"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "NO_COLOR": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "converging" in proc.stderr  # the progress of the long phase
    assert _limits() == before  # the host's neighbour table as it was
    out: dict[str, object] = json.loads(proc.stdout)
    return out


def test_every_node_holds_every_block_equal_to_the_verifier(result: dict) -> None:
    assert result["nodes"] == NODES and result["topology"] == "hierarchy"
    assert result["converged"] is True
    assert result["sessions_established"] == result["sessions_expected"] > NODES
    assert result["matches_verifier"] is True and result["bird_reachable"] is True
    assert result["missing_pairs"] == 0
    limits = result["neighbour_limits"]
    assert limits["gc_thresh3"] >= 4 * result["sessions_expected"]


def test_measurements_are_there(result: dict) -> None:
    bird = result["bird"]
    for role in ("clients", "route_reflectors"):
        assert 1.0 < bird[role]["rss_mb"]["median"] < 200.0
    assert bird["clients"]["rss_mb"]["count"] + bird["route_reflectors"]["rss_mb"]["count"] == NODES
    figures = result["route_reflector_figures"]
    assert figures["sessions"]["count"] == result["route_reflectors"]
    # every RR holds a path to every block (200 blocks + the lab's /16)
    assert figures["busiest"][0]["prefixes"] == NODES + 1
    # with add paths BIRD receives every path, the verifier counts prefixes: never fewer
    assert figures["updates_received_over_predicted"]["median"] >= 1.0


def test_losing_the_busiest_rr_costs_no_sampled_client_a_route(result: dict) -> None:
    failover = result["failover"]
    assert failover["sampled_clients"] > 10
    for case in ("crash_graceful_restart", "clean_stop"):
        run = failover[case]
        assert run["sweeps"] > 5, run
        assert run["clients_with_loss"] == 0, run
        assert run["seconds_until_rr_back"] is not None, run
        assert run["then_sampled_clients_whole_s"] is not None, run
