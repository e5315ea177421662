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
period next to the losses.  A sweep asks the nodes from a small thread pool, so
one BIRD that is slow to answer (busy reconfiguring) delays only its own sample.

On a loaded host a sweep can still take minutes (a 50-node migration on confd
at a load average of 54 had one of 506 s).  Then a loss's measured length says
little: it began somewhere between the last sample that held the route and the
first that did not, and ended between the last sample without it and the first
with it again.  Each loss keeps those four times, the report gives the bounds
(``loss_seconds_max_bounds``) and the longest interval between two samples of one
node (``sample_gap_seconds_max``), and says ``sampler_lagged`` when that interval
passed ``lag_limit``: its loss times are then bounds, not measurements.

In a dual-stack lab every sweep also asks every bird6 (the agent's IPv6 sibling,
``LabAgent.v6``): a loss is per family, and the report counts both families
(``route_losses_by_family`` splits them; IPv6 examples say ``(ipv6)``).
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.birdctl import BirdError
from calico_rr.adapters.lab.net import LabNode

#: seconds of sweep period per sampled daemon (500 samples a second at most)
SAMPLE_PACE = 0.002


@dataclass
class Loss:
    node: str
    origin: str
    start: float  # monotonic: the first sample without the route
    end: float | None = None  # the first sample with it again; None: still missing
    family: str = "ipv4"
    held_before: float | None = None  # the last sample that held it (None: = start)
    missing_until: float | None = None  # the last sample without it (None: = start)

    def seconds(self, now: float) -> float:
        return (self.end if self.end is not None else now) - self.start

    def bounds(self, now: float) -> tuple[float, float]:
        """The shortest and longest the loss can have been, given when its node
        was sampled: the sampler saw it missing from ``start`` to
        ``missing_until`` at least, and no longer than from the sample before
        ``start`` to ``end``."""
        low = (self.missing_until or self.start) - self.start
        high = (self.end if self.end is not None else now) - (self.held_before or self.start)
        return low, high


class RouteSampler:
    def __init__(
        self, agent: LabAgent, *, period: float = 0.1, lag_limit: float = 2.0, workers: int = 8
    ) -> None:
        self.agent = agent
        #: minimum seconds between sweep starts (the sampler shares the GIL with
        #: the operator and the agent when they run in one process)
        self.period = period
        #: a node sampled less often than this makes the report's loss times bounds
        self.lag_limit = lag_limit
        self.workers = workers
        self._last_sample: dict[tuple[str, str], float] = {}  # (family, node)
        self._gap_max = 0.0
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
        with ThreadPoolExecutor(self.workers, thread_name_prefix="lab-sample") as pool:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    self.sweep(pool)
                except Exception as exc:  # keep sampling; the report carries it
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                took = time.monotonic() - t0
                self._sweep_times.append(took)
                self._stop.wait(max(self._period() - took, 0.01))

    def _period(self) -> float:
        """``period``, or longer in a large lab: at most ``1 / SAMPLE_PACE``
        samples a second in all, so that the parallel sweep's own load on the
        daemons (one ``show route`` each) stays bounded at any size."""
        lab_nodes = len(self.agent.lab.nodes) * (2 if self.agent.v6 is not None else 1)
        return max(self.period, lab_nodes * SAMPLE_PACE)

    def sweep(self, pool: ThreadPoolExecutor) -> None:
        agents = [self.agent, *([self.agent.v6] if self.agent.v6 is not None else [])]
        jobs = [(agent, node) for agent in agents for node in list(agent.lab.nodes)]
        # list(): wait for all, and raise the first error of any
        list(pool.map(lambda job: self._sample(*job), jobs))
        self.sweeps += 1

    def _sample(self, agent: LabAgent, node: LabNode) -> None:
        try:
            held = agent.held(node) if node.running else None
        except BirdError:
            held = None
        self._record(agent.family, node.name, held)

    def _record(self, family: str, name: str, held: frozenset[str] | None) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last_sample.get((family, name))
            self._last_sample[(family, name)] = now
            if last is not None:
                self._gap_max = max(self._gap_max, now - last)
            if held is None:  # not answering: forget its table, it restarts empty
                self._held.pop((family, name), None)
                for key in [k for k in self._open if k[:2] == (family, name)]:
                    self._open.pop(key).end = now
                return
            before = self._held.get((family, name))
            if before is not None:
                for origin in before - held:
                    loss = Loss(name, origin, now, family=family, held_before=last)
                    self._open[(family, name, origin)] = loss
                    self.losses.append(loss)
            for origin in [o for (f, n, o) in self._open if (f, n) == (family, name)]:
                loss = self._open[(family, name, origin)]
                if origin in held:
                    loss.end = now
                    del self._open[(family, name, origin)]
                else:
                    loss.missing_until = now
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
        lagged = self._gap_max > self.lag_limit
        bounds = [loss.bounds(now) for loss in kept]
        return {
            "route_losses": len(kept),
            **({"route_losses_by_family": by_family} if by_family else {}),
            "loss_seconds_max": round(max((loss.seconds(now) for loss in kept), default=0.0), 3),
            "loss_seconds_max_bounds": [
                round(max((low for low, _ in bounds), default=0.0), 3),
                round(max((high for _, high in bounds), default=0.0), 3),
            ],
            "nodes_with_loss": len({loss.node for loss in kept}),
            "examples": [_example(loss, now, lagged) for loss in kept[:5]],
            "ignored_losses": len(self.losses) - len(kept),
            "sweeps": self.sweeps,
            "sweep_seconds_median": round(statistics.median(times), 4),
            "sweep_seconds_max": round(max(times), 4),
            "sweep_period": self.period,
            "sample_gap_seconds_max": round(self._gap_max, 3),
            "sampler_lagged": lagged,
            "sampler_errors": list(self.errors[:5]),
        }


def _example(loss: Loss, now: float, lagged: bool) -> str:
    """One loss in words; on a lagging sampler, with the bounds of its length."""
    text = f"{loss.node} lacked {loss.origin}" + (" (ipv6)" if loss.family == "ipv6" else "")
    if not lagged:
        return text + f" for {loss.seconds(now):.2f}s"
    low, high = loss.bounds(now)
    return text + f" for {low:.2f}s to {high:.2f}s (sampler lagged)"
