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
        self._held: dict[str, frozenset[str]] = {}
        self._open: dict[tuple[str, str], Loss] = {}
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
        for node in list(self.agent.lab.nodes):
            try:
                held = self.agent.held(node) if node.running else None
            except BirdError:
                held = None
            now = time.monotonic()
            with self._lock:
                if held is None:  # not answering: forget its table, it restarts empty
                    self._held.pop(node.name, None)
                    for key in [k for k in self._open if k[0] == node.name]:
                        self._open.pop(key).end = now
                    continue
                before = self._held.get(node.name)
                if before is not None:
                    for origin in before - held:
                        loss = Loss(node.name, origin, now)
                        self._open[(node.name, origin)] = loss
                        self.losses.append(loss)
                for origin in [o for (n, o) in self._open if n == node.name]:
                    if origin in held:
                        self._open.pop((node.name, origin)).end = now
                self._held[node.name] = held
        self.sweeps += 1

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
        return {
            "route_losses": len(kept),
            "loss_seconds_max": round(max((loss.seconds(now) for loss in kept), default=0.0), 3),
            "nodes_with_loss": len({loss.node for loss in kept}),
            "examples": [
                f"{loss.node} lacked {loss.origin} for {loss.seconds(now):.2f}s"
                for loss in kept[:5]
            ],
            "ignored_losses": len(self.losses) - len(kept),
            "sweeps": self.sweeps,
            "sweep_seconds_median": round(statistics.median(times), 4),
            "sweep_seconds_max": round(max(times), 4),
            "sweep_period": self.period,
            "sampler_errors": list(self.errors[:5]),
        }
