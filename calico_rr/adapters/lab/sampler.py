"""Route sampler: every moment a lab node lacks a route it held before.

A background thread sweeps all running BIRD daemons over their control sockets,
one ``show route`` each, as fast as they answer, and records for every
(node, origin) pair when the node's BGP table stops holding the origin's pod
block and when it holds it again.  Only pairs the node *had* count: a route
that was never there (a node that just joined) is not a loss.  A node whose BIRD
does not answer (killed on purpose) is not sampled until it answers again, and
its table starts from scratch then.

The resolution is one sweep period (a sweep starts every ``period`` seconds, or
as soon as the last one ended when sweeps take longer): a loss shorter than that
can be missed, so the report gives the median and maximum sweep time and the
period next to the losses.

In a dual-stack lab every sweep also asks every bird6 (the agent's IPv6 sibling,
``LabAgent.v6``): a loss is per family, and the report counts both families
(``route_losses_by_family`` splits them; IPv6 examples say ``(ipv6)``).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass

from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.birdctl import BirdError

__all__ = ["Loss", "RouteSampler"]


@dataclass
class Loss:
    node: str
    origin: str
    start: float  # monotonic
    end: float | None = None  # None: still missing when sampling stopped
    family: str = "ipv4"

    def seconds(self, now: float) -> float:
        return (self.end if self.end is not None else now) - self.start


class RouteSampler:
    def __init__(self, agent: LabAgent, *, period: float = 0.1) -> None:
        self.agent = agent
        #: minimum seconds between sweep starts (the sampler shares the GIL with
        #: the operator and the agent when they run in one process)
        self.period = period
        self.losses: list[Loss] = []
        self.sweeps = 0
        #: unexpected exceptions of sweeps (a sweep that failed is not counted)
        self.errors: list[str] = []
        self._sweep_times: list[float] = []
        self._held: dict[tuple[str, str], frozenset[str]] = {}  # (family, node)
        self._open: dict[tuple[str, str, str], Loss] = {}  # (family, node, origin)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.started = 0.0
        self.stopped = 0.0

    def start(self) -> RouteSampler:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="lab-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.stopped = time.monotonic()

    def __enter__(self) -> RouteSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.sweep()
            except Exception as exc:  # keep sampling; the report carries it
                self.errors.append(f"{type(exc).__name__}: {exc}")
            took = time.monotonic() - t0
            self._sweep_times.append(took)
            self._stop.wait(max(self.period - took, 0.01))

    def sweep(self) -> None:
        agents = [self.agent, *([self.agent.v6] if self.agent.v6 is not None else [])]
        for agent in agents:
            for node in list(agent.lab.nodes):
                try:
                    held = agent.held(node) if node.running else None
                except BirdError:
                    held = None
                self._record(agent.family, node.name, held)
        self.sweeps += 1

    def _record(self, family: str, name: str, held: frozenset[str] | None) -> None:
        now = time.monotonic()
        with self._lock:
            if held is None:  # not answering: forget its table, it restarts empty
                self._held.pop((family, name), None)
                for key in [k for k in self._open if k[:2] == (family, name)]:
                    self._open.pop(key).end = now
                return
            before = self._held.get((family, name))
            if before is not None:
                for origin in before - held:
                    loss = Loss(name, origin, now, family=family)
                    self._open[(family, name, origin)] = loss
                    self.losses.append(loss)
            for origin in [o for (f, n, o) in self._open if (f, n) == (family, name)]:
                if origin in held:
                    self._open.pop((family, name, origin)).end = now
            self._held[(family, name)] = held

    def report(
        self,
        *,
        ignore_nodes: frozenset[str] = frozenset(),
        ignore_origins: frozenset[str] = frozenset(),
    ) -> dict[str, object]:
        """Losses, leaving out observers in ``ignore_nodes`` and origins in
        ``ignore_origins`` (a killed node, a deleted node's block)."""
        now = self.stopped or time.monotonic()
        with self._lock:
            kept = [
                loss
                for loss in self.losses
                if loss.node not in ignore_nodes and loss.origin not in ignore_origins
            ]
        times = self._sweep_times or [0.0]
        by_family: dict[str, int] = {}
        if self.agent.v6 is not None:
            by_family = {self.agent.family: 0, "ipv6": 0}
            for loss in kept:
                by_family[loss.family] = by_family.get(loss.family, 0) + 1
        return {
            "route_losses": len(kept),
            **({"route_losses_by_family": by_family} if by_family else {}),
            "loss_seconds_max": round(max((loss.seconds(now) for loss in kept), default=0.0), 3),
            "nodes_with_loss": len({loss.node for loss in kept}),
            "examples": [
                f"{loss.node} lacked {loss.origin}"
                + (" (ipv6)" if loss.family == "ipv6" else "")
                + f" for {loss.seconds(now):.2f}s"
                for loss in kept[:5]
            ],
            "ignored_losses": len(self.losses) - len(kept),
            "sweeps": self.sweeps,
            "sweep_seconds_median": round(statistics.median(times), 4),
            "sweep_seconds_max": round(max(times), 4),
            "sweep_period": self.period,
            "sampler_errors": list(self.errors[:5]),
        }
