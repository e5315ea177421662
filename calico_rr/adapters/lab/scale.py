"""The lab at the talk's scale (issue 18): hundreds to thousands of real BIRDs.

What the 16-to-120-node lab does per change (an API server, confd or the agent
re-rendering on every event, a full ``show route`` of every daemon ten times a
second) does not hold at 1000 nodes, and the full mesh it starts from never
converges at 200 (docs/LAB.md).  The scale mode keeps what the claim needs and
drops the rest:

* no API server and no mesh: the planner's resources for the synthetic cluster
  are read back as calico-node reads them (``plan_state``), gated by the
  verifier, and rendered by the lab's agent straight into fresh BIRDs, all
  started in one batch (a cold start of the whole cluster);
* the host's neighbour table is sized first (:func:`neighbour_limits`): every
  namespace shares the host's one ARP table, whose default hard limit (1024
  entries) a few hundred RR sessions exceed;
* convergence is read from counts (``show protocols`` and ``show route count``
  per daemon, only of the daemons not yet done), then checked once in full:
  every node's table against the verifier's prediction, node by node;
* then measured: RSS and CPU time of every BIRD, the routes an RR holds, the
  route updates each RR received against the verifier's ``updates_per_rr``;
* optionally the loss of the busiest RR, twice (crashed: with graceful restart
  on, as Calico renders it, its peers keep its routes as stale; then stopped
  cleanly: they drop them at once), with a prefix-count sampler on a sample of
  its clients, and the time until the RR is back with every route.

:func:`run_scale` returns the JSON summary ``calico-rr lab --scale`` prints; the
measurements are in :mod:`calico_rr.adapters.lab.scale_measure`.
"""

from __future__ import annotations

import _thread
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.birdctl import BirdError
from calico_rr.adapters.lab.net import (
    MAX_NODES,
    LabError,
    LabNetwork,
    neighbour_limits,
    node_ip,
)
from calico_rr.adapters.lab.scale_measure import (
    Bar,
    converge,
    daemon_usage,
    failover,
    no_bar,
    rr_figures,
)
from calico_rr.core.bgp.sessions import SessionGraph, build_session_graph
from calico_rr.core.lab.prediction import DaemonTargets, compare_routes, daemon_targets
from calico_rr.core.operator.safety import gate_plan
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import Plan, plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import plan_state
from calico_rr.model import CalicoState


@dataclass(frozen=True, slots=True)
class ScaleOptions:
    nodes: int
    topology: str = "hierarchy"
    zones: int = 3
    racks: int = 0
    #: seconds to wait for the cold start (and each re-convergence) to converge
    timeout: float = 900.0
    #: also stop and crash the busiest RR, sampling a few of its clients
    failover: bool = True
    #: clients of that RR the prefix-count sampler reads
    sample: int = 40
    #: RRs per client (None: the planner's default)
    redundancy: int | None = None
    #: the RR count, overriding the planner's sizing (None: sized; hierarchy: unused)
    rrs: int | None = None


class MemoryGuard:
    """Stops the lab's BIRDs before the host runs out of memory.

    Every BIRD holds every prefix (times the paths add-path brings it), so a
    lab's memory grows with N squared; with no swap the kernel's OOM killer
    would pick some process of the host.  A thread reads ``MemAvailable``
    every half second; below ``floor_mb`` it kills every daemon of the lab,
    interrupts the main thread (which stops waiting on dead daemons) and
    :meth:`check` raises a :class:`LabError` saying so."""

    def __init__(self, lab: LabNetwork, *, floor_mb: int = 512) -> None:
        self.lab, self.floor_mb = lab, floor_mb
        self.tripped: int | None = None  # MB available when it stopped the lab
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-memory", daemon=True)

    def __enter__(self) -> MemoryGuard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            available = available_mb()
            if available < self.floor_mb:
                self.tripped = available
                for node in self.lab.nodes:
                    if node.proc is not None:
                        node.proc.kill()
                _thread.interrupt_main()  # the main thread stops waiting at once
                return

    def check(self) -> None:
        if self.tripped is not None:
            raise LabError(
                f"the host ran out of memory ({self.tripped} MB available, the guard's "
                f"floor is {self.floor_mb} MB): the lab's BIRDs were stopped; try fewer "
                "nodes or fewer RRs per client (every path of every prefix is held by "
                "every node)"
            )


def available_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    """``MemAvailable`` in MB."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise LabError(f"no MemAvailable in {meminfo}")


def scale_cluster(opts: ScaleOptions) -> tuple[Plan, CalicoState, SessionGraph]:
    """The plan for a synthetic cluster under the lab's node names and addresses
    (``lab-nNN`` on 10.99.0.0/16, known before the namespaces exist), the Calico
    state calico-node would read from it, and its session graph; refused by the
    verifier's gate, as every path that writes a configuration is."""
    synthetic = synthetic_cluster(opts.nodes, zones=opts.zones, racks=opts.racks)
    nodes = [
        dataclasses.replace(n, name=f"{LabNetwork.name_prefix}{i:02d}", ip=node_ip(i))
        for i, n in enumerate(synthetic)
    ]
    extra: dict[str, Any] = {"racks": opts.racks} if opts.racks else {}
    if opts.redundancy is not None:
        extra["redundancy"] = opts.redundancy
    if opts.rrs is not None:
        extra["rrs"] = opts.rrs
    p = plan(nodes, PlanConfig(topology=opts.topology, **extra))  # type: ignore[arg-type]
    state = plan_state(p)
    graph = build_session_graph(state)
    verdict = gate_plan(p, graph=graph)
    if not verdict.ok:
        raise LabError(f"the verifier refuses the plan: {verdict.explain()}")
    return p, state, graph


def full_check(agent: LabAgent, want: DaemonTargets) -> dict[str, Any]:
    """Every daemon's sessions, and every node's kernel table, against the verifier
    node by node.

    The routes are read from each namespace's kernel table (what BIRD's kernel
    protocol installed: what forwards pod traffic), not with ``show route``: a
    BIRD holding thousands of paths grows by megabytes answering any listing
    (measured: 1000 daemons, 18 -> 22.6 GB in one sweep), enough to run this
    machine out of memory at 1000 nodes.  The lab's other tests check that the
    kernel holds exactly the blocks BIRD holds (``LabAgent.kernel_mismatches``)."""
    owner = {n.block: n.name for n in agent.lab.nodes}
    established: dict[str, frozenset[str]] = {}
    held: dict[str, frozenset[str]] = {}
    for node in agent.lab.nodes:
        try:
            sessions = agent.sessions(node)
        except BirdError:
            sessions = {}
        established[node.name] = frozenset(
            peer for peer, info in sessions.items() if info.startswith("Established")
        )
        kernel = agent.lab.kernel_routes(node)
        held[node.name] = frozenset(owner[b] for b in kernel if b in owner) - {node.name}
    cmp = compare_routes(want.held, held)
    ends = sum(len(established.get(name, frozenset())) for name in want.sessions)
    return {
        "sessions_expected": sum(want.sessions.values()) // 2,
        "sessions_established": ends // 2,
        "missing_pairs": len(cmp.observed_missing),
        "verifier_missing_pairs": len(cmp.predicted_missing),
        "bird_reachable": not cmp.observed_missing,
        "matches_verifier": cmp.matches,
        "comparison": cmp.describe(),
    }


def run_scale(
    opts: ScaleOptions, *, progress: Callable[[str], None], bar: Bar = no_bar
) -> dict[str, Any]:
    """Plan and gate, build the lab, cold-start the planner's configuration on
    every BIRD at once, check it against the verifier and measure it."""
    t_all = time.monotonic()
    if not 2 <= opts.nodes <= MAX_NODES:
        raise LabError(f"the scale lab takes 2..{MAX_NODES} nodes, got {opts.nodes}")
    progress(f"planning {opts.nodes} nodes ({opts.topology}), gated by the verifier")
    t0 = time.monotonic()
    p, state, graph = scale_cluster(opts)
    progress("predicting every node's table (the verifier's class engine)")
    want = daemon_targets(graph)
    out: dict[str, Any] = {
        "nodes": opts.nodes,
        "topology": p.topology,
        "route_reflectors": sum(1 for n in graph.nodes if n.cluster_id),
        "redundancy": opts.redundancy or PlanConfig().redundancy,
        "phases": {"plan_and_prediction_s": round(time.monotonic() - t0, 2)},
    }
    entries = 2 * sum(want.sessions.values()) + 2 * opts.nodes + 1024
    progress(f"building {opts.nodes} namespaces on one bridge")
    t0 = time.monotonic()
    with LabNetwork(opts.nodes) as lab:
        out["phases"]["namespaces_s"] = round(time.monotonic() - t0, 2)
        with neighbour_limits(entries, lab=lab) as limits, MemoryGuard(lab) as guard:
            out["neighbour_limits"] = limits or None
            if not limits:
                progress(
                    "warning: the host's neighbour-table limits cannot be set from here "
                    f"(not the initial network namespace); {entries} entries may not fit"
                )
            try:
                agent, graph = _cold_start(lab, state, want, opts, out, progress, bar)
            except (LabError, KeyboardInterrupt):
                guard.check()  # the real cause, when the guard stopped the lab
                raise
            guard.check()
            if opts.failover and out["converged"]:
                out["failover"] = _guarded_failover(agent, graph, want, opts, guard, progress)
            progress("removing the lab")
    out["seconds_total"] = round(time.monotonic() - t_all, 1)
    return out


def _cold_start(
    lab: LabNetwork,
    state: CalicoState,
    want: DaemonTargets,
    opts: ScaleOptions,
    out: dict[str, Any],
    progress: Callable[[str], None],
    bar: Bar,
) -> tuple[LabAgent, SessionGraph]:
    agent = LabAgent(lab)
    progress(f"starting {opts.nodes} BIRDs at once with the planner's configuration")
    t0 = time.monotonic()
    graph = agent.set_state(state)
    agent.apply(state)
    out["phases"]["start_s"] = round(time.monotonic() - t0, 2)
    seconds = converge(lab.nodes, want, since=t0, timeout=opts.timeout, bar=bar)
    out["converged"], out["seconds_to_converge"] = seconds is not None, seconds
    progress("reading every daemon's sessions and every node's kernel table")
    out.update(full_check(agent, want))
    out["bird"] = daemon_usage(lab, graph)
    out["route_reflector_figures"] = rr_figures(lab, graph)
    return agent, graph


def _guarded_failover(
    agent: LabAgent,
    graph: SessionGraph,
    want: DaemonTargets,
    opts: ScaleOptions,
    guard: MemoryGuard,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """:func:`failover`, or why it stopped when the memory guard stopped the lab
    (an RR's return re-sends every path: the lab's peak memory): the cold start's
    results stand."""
    try:
        return failover(
            agent, graph, want, sample=opts.sample, timeout=opts.timeout, progress=progress
        )
    except (LabError, KeyboardInterrupt):
        if guard.tripped is None:
            raise
        return {"aborted": f"the memory guard stopped the lab ({guard.tripped} MB available)"}
