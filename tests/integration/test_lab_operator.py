"""The operator driving real BIRD daemons (issue 6): every transition watched by
the route sampler.

16 emulated nodes (+4 spare) in 3 zones, Kubernetes Nodes in a real API server,
BIRD configured from the API server by Calico's confd (with the session shim),
the lab agent reporting session states back
into CalicoNodeStatus (which gates the operator's make-before-break), the
operator as the unprivileged ``calico-rr`` user.  Steps: migrate from the full
mesh, scale up, scale down, an RR's BIRD killed and restarted, an RR cordoned, a
topology switch, a zone down and back, `calico-rr uninstall` back to the full
mesh.  After every step BIRD's tables equal the verifier's prediction with every
session Established, and no node lost a route it had — except:

* the killed node's own block and its own table (allowed by the issue);
* deleted nodes (they are gone), and the nodes of a zone taken down (their BIRDs
  killed) as observers and as origins;
* nodes whose RR cluster ID appeared, went or changed in the step: BIRD
  restarts a session whose ``rr client`` / ``rr cluster id`` options change,
  so such a node's sessions drop for a moment (measured here: well under 2 s).
  The test bounds that and asserts that no other node loses any route of any
  other node.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from calico_rr.adapters.calico_bin import locate
from calico_rr.adapters.lab.runner import ClusterLab
from calico_rr.core.lab.bird import BgpTimers
from calico_rr.model import ZONE_LABEL

pytestmark = pytest.mark.integration

SIZE = 16
SPARE = 4


@pytest.fixture(scope="module")
def lab() -> Iterator[ClusterLab]:
    """Calico's confd with the session shim: with Calico's own graceful restart
    and both ends active, stock BIRD 1.6 flaps 8-40 s after each change (docs/LAB.md
    "Session shim"), which the 3 s bound below cannot hold.  The imitation's run
    of these steps was dropped for CI time: the claim rests on confd, and the
    imitation is compared with confd in test_lab_bird.py."""
    locate()  # builds Calico's binaries when missing; fails, never skips
    with ClusterLab(
        SIZE, spare=SPARE, zones=3, timeout=150, renderer="confd", confd_fast_sessions=BgpTimers()
    ) as cl:
        yield cl


def _check(step: dict[str, Any], *, losses: bool = False) -> None:
    assert step["converged"], step
    assert step["matches_verifier"] and step["bird_reachable"], step
    assert step["sessions_established"] == step["sessions_expected"] > 0, step
    assert step["route_losses_outside_role_changes"] == 0, step[
        "loss_examples_outside_role_changes"
    ]
    if not losses:
        assert step["route_losses"] == 0, step["examples"]
    # the sampler really sampled: several sweeps per second of the step
    assert step["sweeps"] >= 5
    # and never failed (a BIRD killed mid-sweep reads as "not answering", not as an error)
    assert step["sampler_errors"] == [], step["sampler_errors"]


def test_operator_transitions_on_real_bird(lab: ClusterLab) -> None:
    import time

    mesh = lab.wait_bird(since=time.monotonic())
    assert mesh["converged"] and mesh["sessions_expected"] == SIZE * (SIZE - 1) // 2

    steps: dict[str, dict[str, Any]] = {}
    steps["migrate"] = lab.step(
        "migrate from the full mesh",
        lambda: lab.start_operator({"topology": "single", "waitTimeout": "60s"}),
    )
    _check(steps["migrate"], losses=True)
    rrs = lab.route_reflectors()
    assert len(rrs) >= 2 and steps["migrate"]["role_changed_nodes"] == rrs
    # the mesh is off: far fewer sessions than the mesh's n(n-1)/2
    assert steps["migrate"]["sessions_expected"] < mesh["sessions_expected"] // 2
    # a promoted RR's own sessions restart once: short and only those nodes
    assert steps["migrate"]["loss_seconds_max"] < 3.0
    # the break was gated by the sessions BIRD reported through CalicoNodeStatus,
    # not by the 60 s fallback wait
    assert steps["migrate"]["seconds_to_converge"] < 60
    assert lab.watcher.status_writes > 0

    joined: list[str] = []
    steps["up"] = lab.step("scale up", lambda: joined.extend(lab.join(SPARE)))
    _check(steps["up"], losses=True)
    assert steps["up"]["nodes"] == SIZE + SPARE

    leaving = [n for n in reversed(lab.members) if n not in lab.route_reflectors()][:2]
    steps["down"] = lab.step(
        "scale down",
        lambda: lab.delete(leaving),
        ignore_origins=frozenset(leaving),
        ignore_nodes=frozenset(leaving),
    )
    _check(steps["down"], losses=True)
    assert steps["down"]["nodes"] == SIZE + SPARE - 2

    victim = lab.route_reflectors()[0]
    steps["kill"] = lab.step(
        "RR BIRD killed", lambda: lab.kill_bird(victim), operator=False,
        down=frozenset({victim}),
    )  # fmt: skip
    _check(steps["kill"])  # nobody but the victim loses anything
    # peers kept the victim's block as a stale graceful-restart route while it was
    # down; as its sessions come back that one block may blink (the killed node's
    # own block is the one exception the lab allows); nothing else may
    steps["restart"] = lab.step("RR BIRD restarted", lambda: lab.restart_bird(victim),
                                operator=False, ignore_origins=frozenset({victim}))  # fmt: skip
    _check(steps["restart"])

    cordoned = lab.route_reflectors()[-1]
    steps["cordon"] = lab.step("RR cordoned", lambda: lab.cordon(cordoned))
    _check(steps["cordon"], losses=True)
    assert cordoned not in lab.route_reflectors()
    assert cordoned in steps["cordon"]["role_changed_nodes"]

    steps["switch"] = lab.step("switch to multi", lambda: lab.set_topology({"topology": "multi"}))
    _check(steps["switch"], losses=True)
    assert lab.current_topology() == "multi"
    assert lab.agent.kernel_mismatches() == []
    assert lab.watcher.errors == []
    assert lab.watcher.status_writes > 0  # sessions reported through CalicoNodeStatus

    # a whole zone goes down (its BIRDs killed, its Nodes NotReady): the operator
    # moves the RR role off it; nobody outside the zone loses a route of a node
    # outside it (but for the promoted RRs' own sessions), then the zone comes back
    lost = _zone_members(lab, lab.route_reflectors()[0])
    assert 0 < len(lost) < len(lab.members)

    def zone_down() -> None:
        for name in lost:
            lab.kill_bird(name)
            lab.set_ready(name, False)

    steps["zone down"] = lab.step("zone down", zone_down, down=lost)
    _check(steps["zone down"], losses=True)
    assert not lost & set(lab.route_reflectors())

    def zone_up() -> None:
        for name in lost:
            lab.set_ready(name, True)
            lab.restart_bird(name)

    steps["zone up"] = lab.step("zone up", zone_up, ignore_origins=lost)
    _check(steps["zone up"], losses=True)

    # `calico-rr uninstall` with the operator running: mesh back first, then our
    # peerings go; only the former RRs (whose cluster ID goes) may blink
    lab.set_topology({"waitTimeout": "10s"})
    rrs_before = lab.route_reflectors()
    steps["uninstall"] = lab.step("uninstall", lab.uninstall, operator=False)
    _check(steps["uninstall"], losses=True)
    assert lab.route_reflectors() == []
    n = len(lab.members)
    assert steps["uninstall"]["sessions_established"] == n * (n - 1) // 2  # the full mesh
    assert set(steps["uninstall"]["role_changed_nodes"]) == set(rrs_before)


def _zone_members(lab: ClusterLab, node: str) -> frozenset[str]:
    """The nodes in ``node``'s zone (its topology.kubernetes.io/zone label)."""
    labels = {
        name: (obj.get("metadata") or {}).get("labels") or {}
        for name, obj in lab.watcher.informers["nodes"].items().items()
    }
    zone = labels[node][ZONE_LABEL]
    return frozenset(
        name for name, lab_labels in labels.items() if lab_labels.get(ZONE_LABEL) == zone
    )
