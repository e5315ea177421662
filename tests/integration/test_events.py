"""The operator's Events through ``events.k8s.io/v1`` on a real kube-apiserver.

The operator runs in-process as the unprivileged ``calico-rr`` user with
deploy/rbac.yaml (events.k8s.io create + patch only), so every Event below was
also allowed by that RBAC.

* Nodes get RouteReflectorAdded when they become route reflectors and
  RouteReflectorRemoved when they stop; the config gets its phase Events; each
  names its ``regarding`` object by kind, name and uid.
* A repeat of the same Event within the series window bumps ``series.count`` and
  ``series.lastObservedTime`` on the one Event object (a PATCH), as client-go's
  recorder does; other news, or a repeat after the Event is gone, is a new Event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.events import (
    EVENTS_API,
    REPORTING_CONTROLLER,
    EventRecorder,
    Regarding,
)
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_CLUSTER_ID
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import calico_crds, install_operator_rbac

from .test_operator_scenarios import Cluster

pytestmark = pytest.mark.integration

EVENTS = api_path(EVENTS_API, "events", namespace="default")


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    with ControlPlane() as cp:
        apply_crds(cp, calico_crds("crd.projectcalico.org-v1"))
        install_operator_rbac(cp)
        yield cp


@pytest.fixture
def cluster(plane: ControlPlane) -> Iterator[Cluster]:
    admin = KubeClient.from_kubeconfig(plane.admin_kubeconfig)
    c = Cluster(plane, admin, "crd.projectcalico.org/v1")
    try:
        yield c
    finally:
        c.stop_operators()
        admin.close()


def _events(admin: KubeClient, **match: str) -> list[dict[str, Any]]:
    items, _ = admin.list(EVENTS)
    return [e for e in items if all(e.get(k) == v for k, v in match.items())]


def _wait(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.1)


def test_route_reflector_events_on_nodes_and_phase_events_on_the_config(
    cluster: Cluster,
) -> None:
    c = cluster
    c.add(synthetic_cluster(8, zones=2))
    c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"})
    op = c.operator()
    c.steady(op)
    nodes = c.nodes()
    rrs = {n for n, o in nodes.items() if ANN_CLUSTER_ID in o["metadata"].get("annotations", {})}
    assert len(rrs) >= 2

    def added() -> dict[str, dict[str, Any]]:
        found = {e["regarding"]["name"]: e for e in _events(c.admin, reason="RouteReflectorAdded")}
        return found if set(found) == rrs else {}

    for name, event in _wait("RouteReflectorAdded for every RR", added).items():
        node = nodes[name]
        assert event["regarding"] == {
            "apiVersion": "v1",
            "kind": "Node",
            "name": name,
            "uid": node["metadata"]["uid"],
        }
        assert event["type"] == "Normal" and event["action"] == "Promote"
        assert node["metadata"]["annotations"][ANN_CLUSTER_ID] in event["note"]
        assert event["reportingController"] == REPORTING_CONTROLLER
        assert event["reportingInstance"] == "op"
        assert event["eventTime"] and "series" not in event
    config = c.admin.get("/apis/calico-rr.io/v1alpha1/routereflectorconfigs/default")
    assert config is not None
    about_config = [e for e in _events(c.admin) if e["regarding"]["name"] == "default"]
    assert "MeshDisabled" in {e["reason"] for e in about_config}
    for event in about_config:
        assert event["regarding"] == {
            "apiVersion": "calico-rr.io/v1alpha1",
            "kind": "RouteReflectorConfig",
            "name": "default",
            "uid": config["metadata"]["uid"],
        }
        assert event["action"] == "Reconcile"

    # an RR cordoned: it is replaced, and stops being a route reflector
    gone = sorted(rrs)[0]
    c.cordon(gone)

    def removed() -> list[dict[str, Any]]:
        return [
            e
            for e in _events(c.admin, reason="RouteReflectorRemoved")
            if e["regarding"]["name"] == gone
        ]

    (event,) = _wait("RouteReflectorRemoved", removed, timeout=120)
    assert event["regarding"]["uid"] == nodes[gone]["metadata"]["uid"]
    assert event["action"] == "Demote"
    # the Events are the same objects through the core/v1 API (kubectl get events)
    core_view, _ = c.admin.list(api_path("v1", "events", namespace="default"))
    assert any(
        e.get("reason") == "RouteReflectorRemoved" and e["involvedObject"]["name"] == gone
        for e in core_view
    )


def test_a_repeated_event_bumps_its_series(cluster: Cluster) -> None:
    c = cluster
    c.add(synthetic_cluster(1, zones=1))
    (name,) = c.nodes()
    uid = c.nodes()[name]["metadata"]["uid"]
    client = KubeClient.from_kubeconfig(c.cp.operator_kubeconfig)  # deploy/rbac.yaml's user
    try:
        recorder = EventRecorder(client, instance="series-test")
        node = Regarding("v1", "Node", name, uid)
        for _ in range(3):
            recorder.record(node, "Warning", "SeriesTest", "Check", "same news")
        (event,) = _events(c.admin, reason="SeriesTest")
        assert event["series"]["count"] == 3
        assert event["series"]["lastObservedTime"] >= event["eventTime"]
        assert event["note"] == "same news" and event["regarding"]["uid"] == uid

        # other news about the same object: a new Event, the series untouched
        recorder.record(node, "Warning", "SeriesTest", "Check", "other news")
        events = {e["note"]: e for e in _events(c.admin, reason="SeriesTest")}
        assert set(events) == {"same news", "other news"}
        assert events["same news"]["series"]["count"] == 3
        assert "series" not in events["other news"]

        # the Event gone (expired or deleted): the next repeat creates it anew
        c.admin.delete(
            api_path(EVENTS_API, "events", event["metadata"]["name"], namespace="default")
        )
        recorder.record(node, "Warning", "SeriesTest", "Check", "same news")
        fresh = [e for e in _events(c.admin, reason="SeriesTest") if e["note"] == "same news"]
        assert len(fresh) == 1 and "series" not in fresh[0]
        assert fresh[0]["metadata"]["name"] != event["metadata"]["name"]

        # past the window a repeat is a new Event too
        quick = EventRecorder(client, instance="series-test", window=0.0)
        quick.record(node, "Normal", "WindowTest", "Check", "x")
        quick.record(node, "Normal", "WindowTest", "Check", "x")
        assert len(_events(c.admin, reason="WindowTest")) == 2
    finally:
        client.close()
