"""What the scale lab measures on its running BIRDs (``calico-rr lab --scale``).

* :func:`daemon_usage` — resident memory and CPU time of every BIRD, read from
  ``/proc`` (the daemon's own process: ``ip netns exec`` execs BIRD in place);
* :func:`rr_figures` — for each route reflector: its sessions, the routes
  (paths) and prefixes its table holds, and the route updates it received over
  BGP against the verifier's ``updates_per_rr`` prediction;
* :func:`failover` — the loss of the busiest route reflector, twice: stopped
  cleanly (BIRD sends Cease; its peers drop its routes at once) and crashed
  (SIGKILL, no NOTIFICATION: with graceful restart on, as Calico renders it,
  the peers keep its routes as stale for the restart time).  The route sampler
  reads a sample of its clients; then the RR is started again and the time the
  cluster takes to show every session and prefix again is measured.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.birdctl import BirdError
from calico_rr.adapters.lab.net import LabNetwork, LabNode
from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.bgp.verify.fast import propagate as fast_propagate
from calico_rr.core.lab.prediction import DaemonTargets

_TICK = os.sysconf("SC_CLK_TCK")
#: seconds without any open loss after which a failover's losses are over
_QUIET = 3.0
_LOSS_WINDOW = 60.0


def _usage(pid: int) -> tuple[float, float] | None:
    """(RSS in MB, CPU seconds) of a process, None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)
    return rss_kb / 1024, cpu


def _summary(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
        "sum": round(sum(values), digits),
    }


def _rr_names(graph: SessionGraph) -> set[str]:
    return {n.name for n in graph.nodes if n.cluster_id}


def daemon_usage(lab: LabNetwork, graph: SessionGraph) -> dict[str, Any]:
    """RSS (MB) and CPU seconds since start, for clients and route reflectors."""
    rrs = _rr_names(graph)
    rows: dict[str, list[tuple[float, float]]] = {"clients": [], "route_reflectors": []}
    for node in lab.nodes:
        got = _usage(node.proc.pid) if node.proc is not None and node.running else None
        if got is not None:
            rows["route_reflectors" if node.name in rrs else "clients"].append(got)
    return {
        role: {
            "rss_mb": _summary([r for r, _ in vals]),
            "cpu_s": _summary([c for _, c in vals]),
        }
        for role, vals in rows.items()
    }


def rr_figures(lab: LabNetwork, graph: SessionGraph) -> dict[str, Any]:
    """Per route reflector: sessions, routes and prefixes held, route updates
    received against the verifier's prediction (the busiest five listed)."""
    result = fast_propagate(graph, updates=True)
    predicted = {graph.nodes[i].name: n for i, n in result.rr_updates().items()}
    idx = graph.index()
    rows: list[dict[str, Any]] = []
    for name in sorted(_rr_names(graph)):
        control = lab.node(name).control
        if control is None:
            continue
        try:
            count = control.route_count()
            received = sum(control.import_updates().values())
        except BirdError:
            continue
        rows.append(
            {
                "node": name,
                "sessions": graph.degree(idx[name]),
                "routes": count.routes,
                "prefixes": count.networks,
                "updates_received": received,
                "updates_predicted": predicted.get(name, 0),
            }
        )
    ratios = [
        r["updates_received"] / r["updates_predicted"] for r in rows if r["updates_predicted"]
    ]
    return {
        "sessions": _summary([r["sessions"] for r in rows], 0),
        "routes": _summary([r["routes"] for r in rows], 0),
        "updates_received": _summary([r["updates_received"] for r in rows], 0),
        "updates_predicted": _summary([r["updates_predicted"] for r in rows], 0),
        "updates_received_over_predicted": _summary(ratios, 3),
        "busiest": sorted(rows, key=lambda r: -r["sessions"])[:5],
    }


def _sample(graph: SessionGraph, rr: str, size: int) -> list[str]:
    """Up to ``size`` of the RR's clients, spread evenly over them by name."""
    idx = graph.index()
    clients = sorted(
        graph.nodes[j].name for j in graph.peers(idx[rr]) if not graph.nodes[j].cluster_id
    )
    step = max(1, len(clients) // max(size, 1))
    return clients[::step][:size]


class DeficitSampler:
    """How long each sampled client's table held fewer prefixes than it should.

    The lab's route sampler lists whole tables (a ``show route`` of 1000
    prefixes and their paths per node), which takes seconds per sweep on a
    loaded 1000-node lab; this one reads ``show route count`` (a millisecond).
    A client is short while its prefix count is below ``floor``; a lost prefix
    is missing at most that long, so the longest deficit bounds the longest
    time any sampled client went without a route to any prefix."""

    def __init__(self, lab: LabNetwork, floors: dict[str, int], *, period: float = 0.1) -> None:
        self.lab, self.floors, self.period = lab, floors, period
        self.deficits: list[tuple[str, float, float | None]] = []  # node, start, end
        self.sweep_times: list[float] = []
        self._open: dict[str, float] = {}
        #: when the failure happened (:meth:`mark`), and who was short already then
        self.marked = 0.0
        self.short_before: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-deficits", daemon=True)

    def __enter__(self) -> DeficitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        now = time.monotonic()
        self.deficits += [(name, start, None) for name, start in self._open.items()]
        self._end = now

    @property
    def short_now(self) -> int:
        return len(self._open)

    def mark(self) -> None:
        """The failure happens now: only shortfalls from here on count, and not
        those of clients already short (the lab still settling)."""
        self.marked = time.monotonic()
        self.short_before = frozenset(self._open)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            for name, floor in self.floors.items():
                control = self.lab.node(name).control
                try:
                    networks = control.route_count().networks if control else -1
                except BirdError:
                    networks = -1
                now = time.monotonic()
                if networks < floor and name not in self._open:
                    self._open[name] = now
                elif networks >= floor and name in self._open:
                    self.deficits.append((name, self._open.pop(name), now))
            self.sweep_times.append(time.monotonic() - t0)
            self._stop.wait(max(self.period - self.sweep_times[-1], 0.01))

    def report(self) -> dict[str, Any]:
        kept = [
            (name, start, end)
            for name, start, end in self.deficits
            if start >= self.marked and name not in self.short_before
        ]
        spans = [(end if end is not None else self._end) - start for _, start, end in kept]
        return {
            "clients_with_loss": len({name for name, _, _ in kept}),
            "loss_seconds_max": round(max(spans, default=0.0), 2),
            "still_short_at_end": sum(1 for _, _, end in kept if end is None),
            "short_before_the_failure": len(self.short_before),
            "sweeps": len(self.sweep_times),
            "sweep_seconds_median": round(statistics.median(self.sweep_times or [0.0]), 4),
        }


#: ``bar(phase, done, total)``: progress of a long phase (the CLI draws it)
Bar = Callable[[str, int, int], None]


def no_bar(_phase: str, _done: int, _total: int) -> None:
    pass


def converge(
    nodes: Sequence[LabNode],
    want: DaemonTargets,
    *,
    since: float,
    timeout: float,
    bar: Bar = no_bar,
) -> float | None:
    """Seconds from ``since`` until each running daemon of ``nodes`` shows its
    sessions and its count of prefixes (None: not within ``timeout``).  Each pass
    reads only the daemons not done yet."""
    pending = [n for n in nodes if n.running]
    total = len(pending)
    deadline = time.monotonic() + timeout
    while True:
        pending = [n for n in pending if not node_complete(n, want)]
        bar("converging", total - len(pending), total)
        if not pending:
            return round(time.monotonic() - since, 2)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def node_complete(node: LabNode, want: DaemonTargets) -> bool:
    """The node's BIRD shows every session and every prefix the verifier gives it."""
    control = node.control  # one read: a kill on another thread may clear it
    if control is None or not node.running:
        return False
    try:
        up = sum(1 for p in control.protocols() if p.established)
        if up != want.sessions[node.name]:
            return False
        return control.route_count().networks == want.networks[node.name]
    except BirdError:
        return False


def _loss_run(
    agent: LabAgent, node: LabNode, floors: dict[str, int], *, clean: bool
) -> dict[str, Any]:
    """Stop (or crash) ``node``'s BIRD with the deficit sampler on; the losses once
    no sampled client has been short for a few seconds (or after a minute)."""
    with DeficitSampler(agent.lab, floors) as sampler:
        t0 = time.monotonic()
        while time.monotonic() - t0 < _LOSS_WINDOW:  # healthy tables first
            time.sleep(1.0)
            if not sampler.short_now:
                break
        t0 = time.monotonic()
        sampler.mark()
        agent.kill(node, clean=clean)
        quiet_since = time.monotonic()
        while time.monotonic() - t0 < _LOSS_WINDOW:
            if sampler.short_now:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > _QUIET:
                break
            time.sleep(0.2)
    forced = clean and node.name in agent.lab.forced_stops  # a clean stop that became a crash
    return {
        **sampler.report(),
        "observed_seconds": round(time.monotonic() - t0, 1),
        "stop_forced_by_sigkill": forced,
    }


def failover(
    agent: LabAgent,
    graph: SessionGraph,
    want: DaemonTargets,
    *,
    sample: int,
    timeout: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """The busiest RR crashed (graceful restart keeps its routes at its peers),
    then stopped cleanly (they drop them); each time started again and timed
    until it holds every session and prefix again.  ``want``: the scale lab's
    targets (sessions and prefix counts per node)."""
    idx = graph.index()
    rr = max(sorted(_rr_names(graph)), key=lambda name: graph.degree(idx[name]))
    # the RR's own block leaves every table while it is down: not a loss
    own = 1 if rr in {o for held in want.held.values() for o in held} else 0
    floors = {c: want.networks[c] - own for c in _sample(graph, rr, sample)}
    node = agent.lab.node(rr)
    out: dict[str, Any] = {"route_reflector": rr, "sampled_clients": len(floors)}
    for case, clean in (("crash_graceful_restart", False), ("clean_stop", True)):
        progress(f"{case.replace('_', ' ')} of {rr}, sampling {len(floors)} of its clients")
        loss = _loss_run(agent, node, floors, clean=clean)
        agent.restart(node)
        loss["seconds_until_rr_back"] = converge(
            [node], want, since=time.monotonic(), timeout=timeout
        )
        # the next case starts from whole tables where it samples
        sampled = [agent.lab.node(name) for name in floors]
        loss["then_sampled_clients_whole_s"] = converge(
            sampled, want, since=time.monotonic(), timeout=timeout
        )
        out[case] = loss
    return out
