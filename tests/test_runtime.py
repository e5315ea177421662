"""adapters/runtime.py: the pieces both operator runtimes share."""

from __future__ import annotations

import time

from calico_rr.adapters.observe import Health, OperatorMetrics
from calico_rr.adapters.runtime import ReconcileLoop, conditions
from calico_rr.core import operator as core
from calico_rr.errors import ConfigError


def test_conditions_move_transition_time_only_on_a_status_change() -> None:
    first = conditions(None, phase="Making", message="m", degraded=None, invalid=None, now=100)
    by = {c["type"]: c for c in first}
    assert by["Progressing"]["status"] == "True" and by["Ready"]["status"] == "False"
    assert {c["lastTransitionTime"] for c in first} == {"1970-01-01T00:01:40Z"}
    later = conditions(
        first,
        phase="Steady",
        message="ok",
        degraded=None,
        invalid=None,
        now=200,
        reason=str.upper,
        extra={"observedGeneration": 3},
    )
    by2 = {c["type"]: c for c in later}
    assert by2["Ready"]["status"] == "True" and by2["Ready"]["reason"] == "STEADY"
    assert by2["Ready"]["lastTransitionTime"] == "1970-01-01T00:03:20Z"  # changed
    assert by2["Degraded"]["lastTransitionTime"] == "1970-01-01T00:01:40Z"  # did not
    assert all(c["observedGeneration"] == 3 for c in later)
    bad = conditions(later, phase="InvalidConfig", message="x", degraded=None, invalid="x")
    assert {c["type"]: c["status"] for c in bad}["InvalidConfig"] == "True"


class _Loop(ReconcileLoop):
    import logging

    log = logging.getLogger("test-loop")

    def __init__(self, debounce: object) -> None:
        self.metrics = OperatorMetrics()
        self.health = Health()
        self._init_loop()
        self.debounce = debounce
        self.passes: list[float] = []
        self.leader = True
        #: the pass asks to run again after this many seconds (as a Decision may)
        self.requeue_after: float | None = None

    @property
    def synced(self) -> bool:
        return True

    @property
    def is_leader(self) -> bool:
        return self.leader

    def reconcile_once(self) -> core.Decision | None:
        self.passes.append(time.monotonic())
        self._record("Steady", "fine")
        if self.requeue_after is not None:
            self._requeue(self.requeue_after)
            self.requeue_after = None
        return None

    def _configured_debounce(self) -> float:
        if isinstance(self.debounce, Exception):
            raise self.debounce
        assert isinstance(self.debounce, float)
        return self.debounce


def _passes_reach(loop: _Loop, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(loop.passes) < n:
        assert time.monotonic() < deadline, f"{len(loop.passes)} passes, waited for {n}"
        time.sleep(0.01)


def test_loop_passes_on_leadership_coalesces_events_and_requeues() -> None:
    loop = _Loop(0.3)
    loop._start_loop("test")
    try:
        _passes_reach(loop, 1)  # became leader: one pass at once
        for _ in range(10):  # a burst of events, closer than the debounce: one pass
            loop._wake.set()
            time.sleep(0.005)
        _passes_reach(loop, 2)
        time.sleep(0.3)
        assert len(loop.passes) == 2
        loop.requeue_after = 0.2  # the next pass asks for another one 0.2 s later
        loop._wake.set()
        _passes_reach(loop, 4)
        assert loop.passes[3] - loop.passes[2] >= 0.2
        sample = loop.metrics.registry.get_sample_value("calico_rr_phase", {"phase": "Steady"})
        assert sample == 1
        loop.leader = False  # a follower never passes, whatever happens
        loop._wake.set()
        time.sleep(0.3)
        assert len(loop.passes) == 4
    finally:
        loop._stop_loop()


def test_an_invalid_config_debounces_with_the_default_and_failures_back_off() -> None:
    loop = _Loop(ConfigError("bad"))
    assert loop._debounce() == 0.2
    loop.debounce = LookupError("none")
    assert loop._debounce() == 0.2
    delays = [loop._pass_failed("boom") for _ in range(10)]
    assert delays[:3] == [0.4, 0.8, 1.6] and delays[-1] == 30.0
    assert loop.stats.errors == 10 and loop.stats.last_phase == "Error"
    errors = loop.metrics.registry.get_sample_value(
        "calico_rr_reconciles_total", {"result": "error"}
    )
    assert errors == 10
