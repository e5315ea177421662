"""The Typha keeper's pure core: target, settle/cool-down decisions, ownership."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError
from calico_rr.adapters.kube.operator import Operator
from calico_rr.core.operator.settings import OperatorSettings, settings_from_spec
from calico_rr.core.operator.typha import (
    MAX_REPLICAS,
    MIN_REPLICAS,
    KeeperState,
    decide,
    managed_by,
    target_replicas,
)

SETTLE = 30.0
COOL = 600.0


@pytest.mark.parametrize(
    ("nodes", "want"),
    [
        (0, 1),
        (1, 1),  # "fewer than the nodes" would be 0: Felix would lose Typha
        (2, 1),
        (3, 2),
        (4, 3),
        (50, 3),
        (600, 3),
        (601, 4),
        (700, 4),
        (800, 4),
        (801, 5),
        (4000, 20),
        (4001, 20),
        (100_000, 20),
    ],
)
def test_target(nodes: int, want: int) -> None:
    assert target_replicas(nodes) == want


@given(st.integers(0, 200_000))
def test_target_bounds(nodes: int) -> None:
    t = target_replicas(nodes)
    assert t >= 1
    if nodes >= 2:
        assert t < nodes
    if nodes >= 4:
        assert MIN_REPLICAS <= t <= MAX_REPLICAS
        assert t * 200 >= nodes or t == MAX_REPLICAS  # one per 200 nodes, up to the cap


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_target_is_monotonic(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert target_replicas(lo) <= target_replicas(hi)


def run(replicas: int, nodes: int, now: float, state: KeeperState) -> Any:
    return decide(replicas, nodes, now, state, settle=SETTLE, cool_down=COOL)


def test_at_target_does_nothing_and_clears_pending() -> None:
    state = KeeperState("down", 5.0, 1.0)
    step = run(3, 500, 100.0, state)
    assert step.replicas is None and step.wait is None
    assert step.state == KeeperState(None, None, 1.0)
    assert "at target" in step.message


def test_scale_up_after_settle_only() -> None:
    step = run(3, 700, 0.0, KeeperState())
    assert step.replicas is None and step.target == 4
    assert step.wait == pytest.approx(SETTLE)
    assert "settle" in step.message
    step = run(3, 700, SETTLE - 1, step.state)
    assert step.replicas is None and step.wait == pytest.approx(1.0)
    step = run(3, 700, SETTLE, step.state)
    assert step.replicas == 4
    assert step.state == KeeperState(last_change=SETTLE)
    assert step.message == "scaled 3 -> 4 for 700 nodes"


def test_scale_up_ignores_cool_down() -> None:
    # just scaled down; nodes come back: capacity first, after the settle only
    state = KeeperState(last_change=0.0)
    step = run(3, 900, 1.0, state)
    step = run(3, 900, 1.0 + SETTLE, step.state)
    assert step.replicas == 5


def test_scale_down_waits_for_the_cool_down() -> None:
    step = run(4, 100, 0.0, KeeperState(last_change=-10_000.0))
    assert step.replicas is None and step.target == 3
    assert step.wait == pytest.approx(COOL) and "cool-down" in step.message
    step = run(4, 100, COOL - 1, step.state)
    assert step.replicas is None
    step = run(4, 100, COOL, step.state)
    assert step.replicas == 3


def test_waiting_message_is_stable_so_status_is_not_rewritten() -> None:
    first = run(4, 100, 0.0, KeeperState())
    later = run(4, 100, 123.4, first.state)
    assert first.message == later.message
    assert "scaling at 1970-01-01T00:10:00Z (cool-down)" in first.message


def test_scale_down_waits_a_cool_down_after_the_last_change() -> None:
    # the lower target has held long enough, but the last change was recent
    state = KeeperState("down", 0.0, 500.0)
    step = run(4, 100, COOL, state)
    assert step.replicas is None
    assert step.wait == pytest.approx(500.0)
    assert run(4, 100, 500.0 + COOL, step.state).replicas == 3


def test_target_back_at_replicas_restarts_the_cool_down() -> None:
    step = run(4, 100, 0.0, KeeperState())
    step = run(4, 700, 300.0, step.state)  # back to 4: nothing pending
    assert step.state.pending is None
    step = run(4, 100, 400.0, step.state)
    assert run(4, 100, COOL, step.state).replicas is None
    assert run(4, 100, 400.0 + COOL, step.state).replicas == 3


def test_direction_change_restarts_the_wait() -> None:
    step = run(4, 100, 0.0, KeeperState())  # down pending since 0
    step = run(4, 1000, 10.0, step.state)  # now up: pending since 10
    assert step.state == KeeperState("up", 10.0, None)
    assert run(4, 1000, 10.0 + SETTLE - 0.5, step.state).replicas is None
    assert run(4, 1000, 10.0 + SETTLE, step.state).replicas == 5


def _dep(meta: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "calico-typha", **meta}, "spec": {"replicas": 1}}


def test_manifest_typha_is_ours_to_scale() -> None:
    assert managed_by(_dep({"namespace": "kube-system"})) is None
    assert managed_by(_dep({"namespace": "kube-system", "ownerReferences": []})) is None


def test_owned_typha_is_left_alone() -> None:
    owner = {
        "apiVersion": "operator.tigera.io/v1",
        "kind": "Installation",
        "name": "default",
        "controller": True,
    }
    who = managed_by(_dep({"namespace": "kube-system", "ownerReferences": [owner]}))
    assert who is not None and "Installation/default" in who
    assert "operator.tigera.io/v1" in who


def test_tigera_layout_is_left_alone() -> None:
    who = managed_by(_dep({"namespace": "calico-system"}))
    assert who is not None and "Tigera operator" in who


@st.composite
def churn(draw: st.DrawFn) -> list[tuple[float, int]]:
    """Observations (time, nodes): random gaps and random node counts."""
    t = 0.0
    out = []
    for _ in range(draw(st.integers(1, 60))):
        t += draw(st.floats(0.0, 400.0, allow_nan=False))
        out.append((t, draw(st.integers(0, 5000))))
    return out


@settings(max_examples=300, deadline=None)
@given(obs=churn(), start=st.integers(1, 20))
def test_no_flapping_under_churn(obs: list[tuple[float, int]], start: int) -> None:
    replicas = start
    state = KeeperState()
    changes: list[tuple[float, int, int, int]] = []  # (time, from, to, observations)
    history: list[tuple[float, int]] = []
    for now, nodes in obs:
        history.append((now, nodes))
        step = run(replicas, nodes, now, state)
        state = step.state
        if step.replicas is not None:
            assert step.replicas == target_replicas(nodes) != replicas
            changes.append((now, replicas, step.replicas, len(history)))
            replicas = step.replicas
    for i, (when, old, new, seen) in enumerate(changes):
        before = history[:seen]  # what the keeper had seen when it decided
        if new < old:
            # never two changes within a cool-down when the second goes down ...
            if i > 0:
                assert when - changes[i - 1][0] >= COOL
            # ... and the lower target held over the whole cool-down before it
            window = [n for t, n in before if when - COOL < t <= when]
            assert all(target_replicas(n) < old for n in window)
            assert history[0][0] <= when - COOL
        else:
            # up only after the higher target was seen for the settle time
            window = [n for t, n in before if when - SETTLE < t <= when]
            assert all(target_replicas(n) > old for n in window)


# -- the operator's keeper step (Operator._keep_typha) with a fake API -------------------

DEP_PATH = "/apis/apps/v1/namespaces/kube-system/deployments/calico-typha"


class FakeClient:
    """Just enough of KubeClient: a Deployment, the config, a request log."""

    field_manager = "calico-rr"
    on_request = None

    def __init__(self, deployment: dict[str, Any] | None, error: int | None = None) -> None:
        self.deployment = deployment
        self.error = error
        self.calls: list[tuple[str, str, Any]] = []

    def get(self, path: str) -> dict[str, Any] | None:
        self.calls.append(("GET", path, None))
        if self.error is not None:
            raise ApiError(self.error, "Forbidden", "forbidden", method="GET", path=path)
        return self.deployment

    def patch(self, path: str, body: Any, *, patch_type: str = "merge") -> dict[str, Any]:
        self.calls.append(("PATCH", path, body))
        if path.endswith("/scale"):
            assert self.deployment is not None
            self.deployment["spec"]["replicas"] = body["spec"]["replicas"]
            return {}
        return {"metadata": {"name": "default"}, "status": body["status"]}

    def create(self, path: str, body: Any) -> dict[str, Any]:
        self.calls.append(("POST", path, body))
        return dict(body)


class FakeInformer:
    def __init__(self, objs: dict[str, Any]) -> None:
        self.objs = objs

    def get(self, name: str) -> Any:
        return self.objs.get(name)

    def __len__(self) -> int:
        return len(self.objs)

    def store(self, obj: dict[str, Any]) -> None:
        self.objs[obj["metadata"]["name"]] = obj


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keeper(
    client: FakeClient, nodes: int, spec: dict[str, Any] | None
) -> tuple[Operator, OperatorSettings, Clock]:
    clock = Clock()
    op = Operator(cast(KubeClient, client), env={}, leader_election=False, clock=clock)
    op.informers = cast(
        Any,
        {
            "config": FakeInformer({"default": {"metadata": {"name": "default"}}}),
            "nodes": FakeInformer({f"n{i}": object() for i in range(nodes)}),
        },
    )
    typha_spec = {"typha": spec} if spec is not None else {}
    settings = settings_from_spec(typha_spec, api_group="crd.projectcalico.org/v1")
    return op, settings, clock


def manifest_typha(replicas: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "calico-typha", "namespace": "kube-system"},
        "spec": {"replicas": replicas},
    }


def typha_status(op: Operator) -> dict[str, Any]:
    cfg = op.informers["config"].get("default") or {}
    return dict((cfg.get("status") or {}).get("typha") or {})


def test_keeper_off_sends_no_request() -> None:
    client = FakeClient(manifest_typha())
    op, settings, _ = keeper(client, 700, None)
    op._keep_typha(settings)
    op._keep_typha(settings)
    assert client.calls == []


def test_keeper_keeps_its_wake_up_through_passes_without_a_read() -> None:
    client = FakeClient(manifest_typha())
    op, settings, clock = keeper(client, 50, {"enabled": True, "settle": "5s"})
    op._keep_typha(settings)
    assert [c[0] for c in client.calls] == ["GET", "PATCH"]  # the status: pending
    assert "settle" in typha_status(op)["message"]
    # another pass (e.g. woken by our own status write) 1 s later: no read, but the
    # wake-up for the due time is kept
    op._requeue_at = None
    clock.now += 1.0
    op._keep_typha(settings)
    assert len(client.calls) == 2
    assert op._requeue_at is not None
    # when due: read, scale, report
    assert op._typha_read is not None
    op._typha_read = (op._typha_read[0], 0.0)  # the read is due now
    clock.now += 4.0
    op._keep_typha(settings)
    scale = [c for c in client.calls if c[1] == DEP_PATH + "/scale"]
    assert scale == [("PATCH", DEP_PATH + "/scale", {"spec": {"replicas": 3}})]
    assert typha_status(op)["replicas"] == 3
    assert any(c[0] == "POST" and c[2]["reason"] == "TyphaScaled" for c in client.calls)


def test_keeper_never_writes_an_owned_typha() -> None:
    dep = manifest_typha()
    dep["metadata"]["ownerReferences"] = [
        {"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "name": "default"}
    ]
    client = FakeClient(dep)
    op, settings, clock = keeper(client, 700, {"enabled": True, "settle": "0s"})
    for _ in range(3):
        op._typha_read = None
        clock.now += 100.0
        op._keep_typha(settings)
    assert not [c for c in client.calls if c[1].startswith(DEP_PATH + "/")]
    status = typha_status(op)
    assert "Installation/default" in status["managedBy"]
    assert status["replicas"] == 1 and status["target"] == 4


def test_keeper_reports_a_refused_read_without_failing() -> None:
    client = FakeClient(manifest_typha(), error=403)
    op, settings, _ = keeper(client, 700, {"enabled": True})
    op._keep_typha(settings)  # no exception: the RR reconcile goes on
    status = typha_status(op)
    assert status["message"].startswith("cannot read Deployment kube-system/calico-typha")
    assert status["replicas"] is None  # null: deleted by the merge patch
    assert any(c[0] == "POST" and c[2]["type"] == "Warning" for c in client.calls)


def test_keeper_off_again_removes_its_status() -> None:
    client = FakeClient(manifest_typha())
    op, settings, _ = keeper(client, 50, {"enabled": True})
    op._keep_typha(settings)
    assert typha_status(op)
    off = settings_from_spec({}, api_group="crd.projectcalico.org/v1")
    op._keep_typha(off)
    assert client.calls[-1] == (
        "PATCH",
        "/apis/calico-rr.io/v1alpha1/routereflectorconfigs/default/status",
        {"status": {"typha": None}},
    )
