"""``calico-rr lab`` as a user runs it: JSON output, and clean-up when interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from calico_rr.adapters.lab.net import NEIGH_KEYS, NEIGH_SYSCTLS, REGISTRY
from calico_rr.sandbox.lab_tools import ensure_lab_tools

from .procs import pids_of

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "calico_rr.cli"]


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    ensure_lab_tools()


def _namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(prefix)]


def _bird_pids(lab_id: str) -> list[int]:
    """BIRD processes whose config lives in this lab's work directory."""
    return pids_of("bird", f"calico-rr-{lab_id}-")


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "lab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for_birds(proc: subprocess.Popen[str], lab_id: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(_bird_pids(lab_id)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "lab daemons did not start"
        time.sleep(0.1)


def test_json_without_operator() -> None:
    # Calico's confd renders node-specific peerings active on both ends, so their
    # connections can collide and back off (docs/LAB.md): CI has seen 26-192 s for
    # this run, so each wait gets 300 s rather than the CLI's default 180 s.
    args = ["lab", "--nodes", "8", "--topology", "single", "--no-operator", "--dedicated", "3"]
    proc = subprocess.run(
        [*CLI, *args, "--timeout", "300", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    for key in (
        "nodes",
        "sessions_established",
        "bird_reachable",
        "missing_pairs",
        "matches_verifier",
        "seconds_to_converge",
    ):
        assert key in out, key
    assert out["nodes"] == 8 and out["bird_reachable"] and out["missing_pairs"] == 0
    assert out["matches_verifier"] and out["sessions_established"] == out["sessions_expected"]
    assert out["seconds_to_converge"] is not None and out["seconds_to_converge"] > 0
    assert out["kernel_mismatches"] == []
    # the planner put the RRs on the 3 workload-free nodes (no pod block of their own)
    assert len(out["dedicated_nodes"]) == 3 and out["route_reflectors"] == 3


def test_sigterm_removes_everything() -> None:
    proc = _start("--nodes", "6", "--topology", "single")
    lab_id = f"crr{proc.pid % 100000}"
    _wait_for_birds(proc, lab_id, 6)
    assert len(_namespaces(lab_id + "-")) == 7  # six nodes and the hub
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert _namespaces(lab_id + "-") == []
    assert _bird_pids(lab_id) == []
    assert not (REGISTRY / f"{lab_id}.json").exists()


def _thresholds() -> list[int]:
    return [int((NEIGH_SYSCTLS / k).read_text()) for k in NEIGH_KEYS]


def test_sigkill_then_cleanup() -> None:
    before = _thresholds()
    proc = _start("--nodes", "4", "--topology", "single")
    lab_id = f"crr{proc.pid % 100000}"
    _wait_for_birds(proc, lab_id, 4)
    # the control plane's temporary directory and the host's raised neighbour
    # limits are in the lab's record
    record = json.loads((REGISTRY / f"{lab_id}.json").read_text())
    directories = record["directories"]
    raised = [record["neighbour_limits"][k][1] for k in NEIGH_KEYS]
    assert raised == _thresholds()
    assert [os.path.basename(d).startswith("calico-rr-cp-") for d in directories] == [True]
    assert os.path.isdir(directories[0])
    proc.kill()
    proc.communicate(timeout=30)
    # the daemons die with the lab process (parent-death signal) ...
    deadline = time.monotonic() + 10
    while _bird_pids(lab_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _bird_pids(lab_id) == []
    # ... the namespaces stay until a clean-up (or the next lab) removes them
    assert _namespaces(lab_id + "-")
    out = subprocess.run(
        [*CLI, "lab", "--cleanup", "--json"], capture_output=True, text=True, check=True
    )
    assert lab_id in json.loads(out.stdout)["removed"]
    assert _namespaces(lab_id + "-") == []
    assert not os.path.exists(directories[0])  # a SIGKILLed lab cannot remove it itself
    assert _thresholds() == before  # nor put the host's limits back
    assert not (REGISTRY / f"{lab_id}.json").exists()
