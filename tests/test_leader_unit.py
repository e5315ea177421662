"""LeaderElector against an in-memory Lease store (no API server).

The fake client keeps objects by path and honours resourceVersion like the API
server: a create of an existing object is AlreadyExists (409), a replace with a
stale resourceVersion is Conflict (409).  A settable clock drives expiry.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import pytest

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError, make_error
from calico_rr.adapters.kube.leader import LeaderElector, micro_time
from calico_rr.core.formats.scalars import parse_timestamp

NS = "calico-rr"
NAME = "calico-rr"
LEASE = api_path("coordination.k8s.io/v1", "leases", NAME, namespace=NS)
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeLeases:
    """get/create/replace on an in-memory store with optimistic concurrency."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.fail: ApiError | None = None
        #: calls refused with ``fail`` (a test waits for them instead of sleeping)
        self.refused = 0
        self.before_replace: Callable[[], None] | None = None
        self.writes: list[tuple[str, str]] = []
        self._lock = threading.RLock()

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        return obj

    def get(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            if self.fail is not None:
                self.refused += 1
                raise self.fail
            obj = self.objects.get(path)
            return copy.deepcopy(obj) if obj is not None else None

    def create(self, collection: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self.fail is not None:
                self.refused += 1
                raise self.fail
            path = f"{collection}/{obj['metadata']['name']}"
            if path in self.objects:
                raise make_error(
                    409,
                    {"kind": "Status", "reason": "AlreadyExists", "message": "exists"},
                    method="POST",
                    path=collection,
                )
            self.writes.append(("create", path))
            self.objects[path] = self._bump(copy.deepcopy(dict(obj)))
            return copy.deepcopy(self.objects[path])

    def replace(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        if self.before_replace is not None:
            hook, self.before_replace = self.before_replace, None
            hook()
        with self._lock:
            if self.fail is not None:
                self.refused += 1
                raise self.fail
            current = self.objects.get(path)
            if current is None:
                raise make_error(404, None, method="PUT", path=path)
            sent = (obj.get("metadata") or {}).get("resourceVersion")
            if sent != current["metadata"]["resourceVersion"]:
                raise make_error(
                    409,
                    {"kind": "Status", "reason": "Conflict", "message": "object was modified"},
                    method="PUT",
                    path=path,
                )
            self.writes.append(("replace", path))
            self.objects[path] = self._bump(copy.deepcopy(dict(obj)))
            return copy.deepcopy(self.objects[path])

    def take(self, holder: str) -> None:
        """Another writer sets the holder (a new resourceVersion, like a real write)."""
        with self._lock:
            obj = copy.deepcopy(self.objects[LEASE])
            obj["spec"]["holderIdentity"] = holder
            self.objects[LEASE] = self._bump(obj)

    def spec(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.objects[LEASE]["spec"])


def elector(
    store: FakeLeases,
    identity: str,
    clock: Clock,
    *,
    lease_duration: float = 3.0,
    retry_period: float | None = None,
    on_change: Callable[[bool], None] | None = None,
) -> LeaderElector:
    return LeaderElector(
        cast(KubeClient, store),
        namespace=NS,
        name=NAME,
        identity=identity,
        lease_duration=lease_duration,
        retry_period=retry_period,
        on_change=on_change,
        clock=clock,
        monotonic=clock,
    )


def wait_until(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


# -- MicroTime ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds",
    [T0, T0 + 0.5, T0 + 0.123456, 1_704_067_199.999999, 0.000001, 86_399.25],
)
def test_micro_time_round_trip(seconds: float) -> None:
    text = micro_time(seconds)
    assert parse_timestamp(text) == pytest.approx(seconds, abs=1e-6)


def test_micro_time_format() -> None:
    assert micro_time(T0) == "2026-01-01T00:00:00.000000Z"
    assert micro_time(T0 + 1.25) == "2026-01-01T00:00:01.250000Z"
    # a fraction that rounds up to a whole second carries into the seconds
    assert micro_time(T0 + 59.9999996) == "2026-01-01T00:01:00.000000Z"


def test_parse_micro_time_accepts_plain_rfc3339() -> None:
    assert parse_timestamp("2026-01-01T00:00:00Z") == T0
    assert parse_timestamp("2026-01-01T00:00:02.5Z") == T0 + 2.5
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


# -- one election round ----------------------------------------------------------------


def test_create_when_absent() -> None:
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock)
    assert a.try_acquire_or_renew()
    obj = store.objects[LEASE]
    assert obj["apiVersion"] == "coordination.k8s.io/v1"
    assert obj["kind"] == "Lease"
    assert obj["metadata"] == {"name": NAME, "namespace": NS, "resourceVersion": "1"}
    spec = store.spec()
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 3
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"] == micro_time(T0)


def test_create_race_lost_returns_false() -> None:
    """Both saw no Lease; the second create gets AlreadyExists and loses the round."""
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    real_get = store.get
    store.get = lambda path: None  # type: ignore[method-assign]
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    store.get = real_get  # type: ignore[method-assign]
    assert store.spec()["holderIdentity"] == "a"


def test_renew_own_lease() -> None:
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock)
    assert a.try_acquire_or_renew()
    first = copy.deepcopy(store.objects[LEASE])
    clock.advance(0.6)
    assert a.try_acquire_or_renew()
    spec = store.spec()
    assert spec["holderIdentity"] == "a"
    assert spec["acquireTime"] == first["spec"]["acquireTime"]
    assert parse_timestamp(spec["renewTime"]) == pytest.approx(T0 + 0.6, abs=1e-6)
    assert spec["leaseTransitions"] == 0
    assert store.objects[LEASE]["metadata"]["resourceVersion"] != "1"
    assert a.transitions == 0


def test_refuse_live_foreign_lease() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    before = copy.deepcopy(store.objects[LEASE])
    writes = len(store.writes)
    clock.advance(2.9)  # renewed 2.9 s ago, lease lasts 3 s
    assert not b.try_acquire_or_renew()
    assert store.objects[LEASE] == before
    assert len(store.writes) == writes  # a refused round writes nothing


def test_take_over_expired_lease() -> None:
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b sees the record now: its clock starts
    clock.advance(3.01)
    assert b.try_acquire_or_renew()
    spec = store.spec()
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    assert spec["acquireTime"] == spec["renewTime"] == micro_time(T0 + 3.01)
    assert b.transitions == 1
    # and the old holder now sees a live foreign lease (a new record)
    assert not a.try_acquire_or_renew()
    clock.advance(3.5)
    assert a.try_acquire_or_renew()
    assert store.spec()["leaseTransitions"] == 2


def test_taking_over_a_released_lease_is_a_transition() -> None:
    """client-go counts every change of holder, also after a graceful release."""
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    a._release()
    assert store.spec()["holderIdentity"] == ""
    assert b.try_acquire_or_renew()
    assert store.spec()["holderIdentity"] == "b"
    assert store.spec()["leaseTransitions"] == 1
    assert b.transitions == 1


def test_expiry_uses_the_lease_duration_written_in_the_lease() -> None:
    """A follower configured with a shorter duration still honours the holder's."""
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock, lease_duration=10.0)
    b = elector(store, "b", clock, lease_duration=2.0)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock.advance(5.0)
    assert not b.try_acquire_or_renew()
    clock.advance(5.01)
    assert b.try_acquire_or_renew()


def test_unparseable_renew_time_is_never_read() -> None:
    """renewTime is not parsed at all: an unchanged record expires after the duration."""
    store, clock = FakeLeases(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    store.objects[LEASE]["spec"]["renewTime"] = "garbage"
    assert not b.try_acquire_or_renew()
    clock.advance(3.0)
    assert b.try_acquire_or_renew()
    assert store.spec()["holderIdentity"] == "b"


def _skewed_holder(store: FakeLeases, clock: Clock, skew: float) -> LeaderElector:
    """A holder whose wall clock is ``skew`` seconds off the follower's."""
    return LeaderElector(
        cast(KubeClient, store),
        namespace=NS,
        name=NAME,
        identity="a",
        lease_duration=3.0,
        clock=lambda: clock() + skew,
        monotonic=clock,
    )


@pytest.mark.parametrize("skew", [-3600.0, -10.0, 10.0, 3600.0])
def test_a_live_lease_is_never_taken_whatever_the_skew(skew: float) -> None:
    """Issue 16: a holder whose renewTime lies in the past (by the follower's clock)
    used to lose a live Lease at once; one in the future kept a dead one for the skew."""
    store, clock = FakeLeases(), Clock()
    a, b = _skewed_holder(store, clock, skew), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    for _ in range(20):  # a keeps renewing every second for 20 s
        assert not b.try_acquire_or_renew()
        clock.advance(1.0)
        assert a.try_acquire_or_renew()
    assert store.spec()["holderIdentity"] == "a"


@pytest.mark.parametrize("skew", [-3600.0, 3600.0])
def test_an_abandoned_lease_is_taken_within_duration_plus_retry(skew: float) -> None:
    store, clock = FakeLeases(), Clock()
    a, b = _skewed_holder(store, clock, skew), elector(store, "b", clock)
    assert a.try_acquire_or_renew()  # its last renewal: then a dies
    retry = b.retry_period
    waited = 0.0
    while not b.try_acquire_or_renew():  # b's loop: one round per retry period
        clock.advance(retry)
        waited += retry
        assert waited <= 3.0 + retry, "the abandoned Lease was not taken in time"
    assert waited >= 3.0 - 1e-9  # and not before the duration passed
    assert store.spec()["holderIdentity"] == "b"


def test_concurrent_takeover_only_one_wins() -> None:
    """a and b both read the expired Lease; b writes first, so a's replace (with
    the resourceVersion it read) is a Conflict and a loses the round."""
    store, clock = FakeLeases(), Clock()
    old = elector(store, "old", clock)
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert old.try_acquire_or_renew()
    assert not a.try_acquire_or_renew() and not b.try_acquire_or_renew()  # both observe it
    clock.advance(4.0)
    results: list[bool] = []
    store.before_replace = lambda: results.append(b.try_acquire_or_renew())
    assert not a.try_acquire_or_renew()
    assert results == [True]
    assert store.spec()["holderIdentity"] == "b"
    assert store.spec()["leaseTransitions"] == 1


# -- the election loop ---------------------------------------------------------------------


def test_loop_acquires_and_reports_change() -> None:
    store, clock = FakeLeases(), Clock()
    changes: list[bool] = []
    a = elector(store, "a", clock, retry_period=0.01, on_change=changes.append)
    a.start()
    try:
        assert a.wait_for_leadership(3.0)
        assert a.is_leader
        assert wait_until(lambda: len(store.writes) >= 3)  # keeps renewing
        assert changes == [True]
    finally:
        a.stop(release=False)
    assert changes == [True, False]
    assert store.spec()["holderIdentity"] == "a"  # not released


def test_step_down_after_renew_deadline_without_renewals() -> None:
    store, clock = FakeLeases(), Clock()
    changes: list[bool] = []
    a = elector(store, "a", clock, retry_period=0.01, on_change=changes.append)
    assert a.renew_deadline == pytest.approx(2.0)
    a.start()
    try:
        assert a.wait_for_leadership(3.0)
        store.fail = make_error(503, None, text="apiserver unavailable")
        # two refusals: a renewal in flight when the API went away has finished (a
        # fixed sleep let a loaded machine's late renewal read the advanced clock)
        assert wait_until(lambda: store.refused >= 2)
        clock.advance(1.5)  # within the renew deadline: still leading
        time.sleep(0.1)
        assert a.is_leader
        assert changes == [True]
        clock.advance(1.0)  # 2.5 s since the last renewal > 2.0 s deadline
        assert wait_until(lambda: not a.is_leader)
        assert changes == [True, False]
        # stepping down happens before the Lease expires for others (3 s)
        assert parse_timestamp(store.spec()["renewTime"]) + 3.0 > clock()
        # the API comes back: the Lease is still ours, so it is renewed and we lead
        store.fail = None
        assert wait_until(lambda: a.is_leader)
        assert changes == [True, False, True]
    finally:
        a.stop(release=False)


def test_leader_whose_lease_was_taken_steps_down_by_the_deadline() -> None:
    """Someone overwrote the Lease (e.g. after a long pause): renewals are refused;
    the replica stops leading once the renew deadline passes."""
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock, retry_period=0.01)
    a.start()
    try:
        assert a.wait_for_leadership(3.0)
        store.take("intruder")
        time.sleep(0.05)
        clock.advance(2.1)
        assert wait_until(lambda: not a.is_leader)
        assert store.spec()["holderIdentity"] == "intruder"
    finally:
        a.stop(release=False)


def test_stop_releases_the_lease() -> None:
    store, clock = FakeLeases(), Clock()
    changes: list[bool] = []
    a = elector(store, "a", clock, retry_period=0.01, on_change=changes.append)
    b = elector(store, "b", clock)
    a.start()
    assert a.wait_for_leadership(3.0)
    assert not b.try_acquire_or_renew()
    a.stop()
    assert not a.is_leader
    assert changes == [True, False]
    spec = store.spec()
    assert spec["holderIdentity"] == ""
    assert parse_timestamp(spec["renewTime"]) < clock() - 3.0
    # no waiting for expiry: the next round of another replica takes it
    assert b.try_acquire_or_renew()
    assert store.spec()["holderIdentity"] == "b"


def test_stop_does_not_release_a_lease_held_by_someone_else() -> None:
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock, retry_period=0.01)
    a.start()
    assert a.wait_for_leadership(3.0)
    store.take("b")
    a.stop()
    assert store.spec()["holderIdentity"] == "b"


def test_stop_as_follower_writes_nothing() -> None:
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock)
    assert a.try_acquire_or_renew()
    b = elector(store, "b", clock, retry_period=0.01)
    b.start()
    time.sleep(0.05)
    writes = len(store.writes)
    b.stop()
    assert not b.is_leader
    assert len(store.writes) == writes
    assert store.spec()["holderIdentity"] == "a"


# -- what stopping and losing log ------------------------------------------------------------

ELECTION_LOG = "calico_rr.adapters.election"


def _leadership_records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == ELECTION_LOG and "leader" in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("release", "message"),
    [
        (True, "leadership released (stopping)"),
        (False, "leadership given up (stopping; the lease is not released)"),
    ],
)
def test_a_stop_is_not_a_loss(
    caplog: pytest.LogCaptureFixture, release: bool, message: str
) -> None:
    caplog.set_level(logging.INFO, logger=ELECTION_LOG)
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock, retry_period=0.01)
    a.start()
    assert a.wait_for_leadership(3.0)
    a.stop(release=release)
    assert _leadership_records(caplog) == [
        (logging.INFO, "became leader"),
        (logging.INFO, message),
    ]
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)


def test_a_real_loss_is_still_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Someone else holds the Lease: past the renew deadline the replica steps down
    and says so as a WARNING; the stop afterwards adds nothing."""
    caplog.set_level(logging.INFO, logger=ELECTION_LOG)
    store, clock = FakeLeases(), Clock()
    a = elector(store, "a", clock, retry_period=0.01)
    a.start()
    try:
        assert a.wait_for_leadership(3.0)
        store.take("intruder")
        time.sleep(0.05)
        clock.advance(2.1)
        assert wait_until(lambda: not a.is_leader)
    finally:
        a.stop()
    records = _leadership_records(caplog)
    assert records[0] == (logging.INFO, "became leader")
    assert (logging.WARNING, "lost leadership") in records
    assert not any("stopping" in message for _, message in records)


def test_stopping_a_follower_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ELECTION_LOG)
    store, clock = FakeLeases(), Clock()
    assert elector(store, "a", clock).try_acquire_or_renew()
    b = elector(store, "b", clock, retry_period=0.01)
    b.start()
    time.sleep(0.05)
    b.stop()
    assert _leadership_records(caplog) == []
