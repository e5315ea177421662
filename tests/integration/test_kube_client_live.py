"""KubeClient and Informer against a real kube-apiserver + etcd (calico_rr.sandbox).

Run with ``pytest tests/integration/test_kube_client_live.py -m integration``.

The control plane runs with the audit log on, so tests can count what really
reached the server, and with the watch cache **disabled for configmaps only**
(``--watch-cache-sizes=configmaps#0``): watches and paginated lists of configmaps
go straight to etcd, so compacting etcd (through its HTTP gateway) produces real
410s on demand.  Nodes keep the watch cache, as in production (a watch on a cached
resource only returns 410 once the cache window moved on, which cannot be forced
quickly; those 410s are injected with ``calico_rr.testing.faults.FaultTransport``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import AlreadyExists, ApiError, Conflict, Gone
from calico_rr.adapters.kube.informer import Informer
from calico_rr.sandbox import ControlPlane, request
from calico_rr.testing.faults import fault_client

pytestmark = pytest.mark.integration

NS = "default"
CM = api_path("v1", "configmaps", namespace=NS)


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    with ControlPlane(
        audit=True, extra_apiserver_args=("--watch-cache-sizes=configmaps#0",)
    ) as plane:
        yield plane


@pytest.fixture
def client(cp: ControlPlane) -> Iterator[KubeClient]:
    with KubeClient.from_kubeconfig(cp.admin_kubeconfig, backoff_base=0.01, backoff_max=0.1) as c:
        yield c


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def labels_of(obj: dict[str, Any] | None) -> dict[str, str]:
    assert obj is not None
    return dict(obj["metadata"].get("labels") or {})


def etcd(cp: ControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(cp.etcd_url + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
    return result


def compact_etcd(cp: ControlPlane) -> int:
    """Bump etcd's revision twice (unrelated objects) and compact everything older."""
    for _ in range(2):
        status, body = request(cp, "POST", CM, configmap(f"bump-{time.monotonic_ns()}"))
        assert status == 201, body
    rev = int(
        etcd(cp, "/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"]
    )
    etcd(cp, "/v3/kv/compaction", {"revision": str(rev), "physical": True})
    return rev


def wait_for(cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- plain verbs ----------------------------------------------------------------------------


def test_crud_on_nodes(client: KubeClient) -> None:
    created = client.create("/api/v1/nodes", node("crud-1", suite="crud", zone="a"))
    assert created["metadata"]["uid"]
    path = api_path("v1", "nodes", "crud-1")
    got = client.get(path)
    assert got is not None and labels_of(got) == {"suite": "crud", "zone": "a"}
    items, rv = client.list("/api/v1/nodes", label_selector="suite=crud")
    assert [i["metadata"]["name"] for i in items] == ["crud-1"]
    assert items[0]["kind"] == "Node" and int(rv) >= int(got["metadata"]["resourceVersion"])
    with pytest.raises(AlreadyExists):
        client.create("/api/v1/nodes", node("crud-1"))

    patched = client.patch(path, {"metadata": {"labels": {"zone": "b"}}})
    assert labels_of(patched)["zone"] == "b"
    json_patched = client.patch(
        path,
        [{"op": "add", "path": "/metadata/labels/extra", "value": "1"}],
        patch_type="json",
    )
    assert labels_of(json_patched)["extra"] == "1"

    stale = dict(got)  # still carries the first resourceVersion
    with pytest.raises(Conflict) as err:
        client.replace(path, stale)
    assert err.value.status == 409 and err.value.reason == "Conflict"
    fresh = client.get(path)
    assert fresh is not None
    fresh["metadata"]["labels"]["zone"] = "c"
    replaced = client.replace(path, fresh)
    assert labels_of(replaced)["zone"] == "c"

    with pytest.raises(Conflict):
        client.delete(path, resource_version=fresh["metadata"]["resourceVersion"])  # now stale
    assert client.delete(path, resource_version=replaced["metadata"]["resourceVersion"]) is True
    assert client.delete(path) is False
    assert client.get(path) is None


def test_served_groups(client: KubeClient) -> None:
    groups = client.served_groups()
    assert {"apps", "coordination.k8s.io", "apiextensions.k8s.io"} <= groups
    assert "crd.projectcalico.org" not in groups


def test_server_side_apply_prunes_own_fields_and_keeps_others(cp: ControlPlane) -> None:
    path = api_path("v1", "nodes", "ssa-1")
    with (
        KubeClient.from_kubeconfig(cp.admin_kubeconfig, field_manager="calico-rr") as ours,
        KubeClient.from_kubeconfig(cp.admin_kubeconfig, field_manager="someone-else") as theirs,
    ):
        theirs.create("/api/v1/nodes", node("ssa-1", kept="by-them"))
        ours.apply(path, node("ssa-1", **{"calico-rr.io/a": "1", "calico-rr.io/b": "2"}))
        assert labels_of(ours.get(path)) == {
            "kept": "by-them",
            "calico-rr.io/a": "1",
            "calico-rr.io/b": "2",
        }
        # Applying again without b removes b (we owned it), keeps the other manager's label.
        applied = ours.apply(path, node("ssa-1", **{"calico-rr.io/a": "1"}))
        assert labels_of(applied) == {"kept": "by-them", "calico-rr.io/a": "1"}
        managers = {m["manager"]: m["operation"] for m in applied["metadata"]["managedFields"]}
        assert managers == {"calico-rr": "Apply", "someone-else": "Update"}
        # Changing a field another manager owns conflicts, unless forced.
        with pytest.raises(Conflict) as err:
            ours.apply(path, node("ssa-1", kept="by-us"))
        assert err.value.status == 409
        forced = ours.apply(path, node("ssa-1", kept="by-us"), force=True)
        assert labels_of(forced) == {"kept": "by-us"}  # calico-rr.io/a no longer applied
        assert ours.delete(path)


def test_apply_status_subresource(client: KubeClient) -> None:
    path = api_path("v1", "nodes", "ssa-status")
    client.apply(path, node("ssa-status"))
    status = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "ssa-status"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.9.8.7"}]},
    }
    out = client.apply(path, status, subresource="status")
    assert out["status"]["addresses"] == [{"type": "InternalIP", "address": "10.9.8.7"}]
    assert client.delete(path)


# -- errors, retries, audit ------------------------------------------------------------------


def test_forbidden_is_not_retried_and_audited(cp: ControlPlane) -> None:
    calls: list[tuple[str, str, int]] = []
    before = len(cp.audit_events("calico-rr"))
    with (
        KubeClient.from_kubeconfig(
            cp.operator_kubeconfig, on_request=lambda *a: calls.append(a)
        ) as op,
        pytest.raises(ApiError) as err,
    ):
        op.get("/api/v1/nodes/forbidden-1")
    assert err.value.status == 403 and err.value.reason == "Forbidden"
    assert "GET /api/v1/nodes/forbidden-1: 403 Forbidden" in str(err.value)
    assert calls == [("get", "nodes", 403)]
    events = cp.audit_events("calico-rr")[before:]
    assert [(e["verb"], e["objectRef"]["name"], e["responseStatus"]["code"]) for e in events] == [
        ("get", "forbidden-1", 403)
    ]


def test_injected_503_is_retried_and_never_reaches_the_server(cp: ControlPlane) -> None:
    calls: list[tuple[str, str, int]] = []
    client, faults = fault_client(
        cp.admin_kubeconfig, backoff_base=0.01, on_request=lambda *a: calls.append(a)
    )
    with client:
        client.create("/api/v1/nodes", node("retry-1"))
        faults.fail_next("GET", "/api/v1/nodes/retry-1", 503, times=2)
        faults.fail_next("PATCH", "/api/v1/nodes/retry-1", 0)  # connection error
        assert client.get("/api/v1/nodes/retry-1") is not None
        client.patch("/api/v1/nodes/retry-1", {"metadata": {"labels": {"x": "y"}}})
        assert client.delete("/api/v1/nodes/retry-1")
    assert faults.injected == 3 and faults.pending == 0
    assert [(v, s) for v, _, s in calls] == [
        ("create", 201),
        ("get", 503),
        ("get", 503),
        ("get", 200),
        ("patch", 0),
        ("patch", 200),
        ("delete", 200),
    ]
    audited = [
        e["verb"]
        for e in cp.audit_events("admin")
        if (e.get("objectRef") or {}).get("name") == "retry-1"
    ]
    assert audited == ["create", "get", "patch", "delete"]


# -- watches ------------------------------------------------------------------------------------


def test_watch_sees_added_modified_deleted(client: KubeClient) -> None:
    _, rv = client.list("/api/v1/nodes", label_selector="suite=watch")
    client.create("/api/v1/nodes", node("watch-1", suite="watch"))
    client.patch("/api/v1/nodes/watch-1", {"metadata": {"labels": {"step": "2"}}})
    client.delete("/api/v1/nodes/watch-1")
    seen: list[tuple[str, str]] = []
    with client.watch(
        "/api/v1/nodes", resource_version=rv, label_selector="suite=watch", timeout_seconds=20
    ) as w:
        for event in w:
            if event.type == "BOOKMARK":
                continue
            seen.append((event.type, event.object["metadata"]["name"]))
            if event.type == "DELETED":
                break
    assert seen == [("ADDED", "watch-1"), ("MODIFIED", "watch-1"), ("DELETED", "watch-1")]


@pytest.mark.parametrize("how", ["watch", "client"])
def test_watch_stops_promptly_from_another_thread(cp: ControlPlane, how: str) -> None:
    c = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
    _, rv = c.list("/api/v1/nodes")
    w = c.watch("/api/v1/nodes", resource_version=rv, timeout_seconds=300)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (list(w), done.set()), daemon=True)
    thread.start()
    time.sleep(0.3)
    assert not done.is_set()
    start = time.monotonic()
    (w.close if how == "watch" else c.close)()
    assert done.wait(3.0), "watch still running"
    assert time.monotonic() - start < 1.0
    if how == "watch":  # the client is still usable
        assert c.get("/api/v1/nodes/none") is None
    c.close()


def test_real_410_on_watch_after_etcd_compaction(client: KubeClient, cp: ControlPlane) -> None:
    client.create(CM, configmap("gone-1", v="1"))
    _, rv = client.list(CM)
    client.patch(api_path("v1", "configmaps", "gone-1", namespace=NS), {"data": {"v": "2"}})
    compact_etcd(cp)
    with pytest.raises(Gone) as err:
        list(client.watch(CM, resource_version=rv, timeout_seconds=5))
    assert err.value.status == 410 and err.value.reason == "Expired"
    _, fresh = client.list(CM)  # a fresh list's version watches fine
    with client.watch(CM, resource_version=fresh, timeout_seconds=1) as w:
        assert list(w) == []


def test_list_restarts_when_continue_token_expires(cp: ControlPlane) -> None:
    compacted = threading.Event()
    calls: list[tuple[str, str, int]] = []

    def on_request(verb: str, resource: str, code: int) -> None:
        calls.append((verb, resource, code))
        if verb == "list" and code == 200 and not compacted.is_set():
            compacted.set()
            compact_etcd(cp)  # between page 1 and page 2

    with KubeClient.from_kubeconfig(cp.admin_kubeconfig) as c:
        for i in range(3):
            c.create(CM, configmap(f"page-{i}"))
        calls.clear()
        c.on_request = on_request
        items, _ = c.list(CM, limit=1)
        all_items, _ = c.list(CM, limit=0)
    names = sorted(i["metadata"]["name"] for i in items)
    assert names == sorted(i["metadata"]["name"] for i in all_items)
    assert {"page-0", "page-1", "page-2"} <= set(names)
    codes = [code for verb, _, code in calls if verb == "list"]
    assert codes[:2] == [200, 410] and set(codes[2:]) == {200}
    assert len(codes) == 2 + len(names) + 1  # + the unpaginated list


# -- informers ----------------------------------------------------------------------------------


class Recorder:
    """on_event sink that can pause the informer thread on a chosen key."""

    def __init__(self, pause_key: str) -> None:
        self.events: list[tuple[str, str, Any]] = []
        self.pause_key = pause_key
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, etype: str, key: str, value: Any) -> None:
        with self.lock:
            self.events.append((etype, key, value))
        if key == self.pause_key and etype == "ADDED":
            self.paused.set()
            self.resume.wait(30)

    def since(self, n: int) -> list[tuple[str, str, Any]]:
        with self.lock:
            return self.events[n:]


def test_informer_lists_once_and_follows_changes(cp: ControlPlane) -> None:
    selector = "suite=informer"
    rec = Recorder(pause_key="")
    with KubeClient.from_kubeconfig(cp.admin_kubeconfig) as c:
        c.create("/api/v1/nodes", node("inf-0", suite="informer", role="x"))
        inf = Informer(
            c,
            "/api/v1/nodes",
            name="nodes",
            label_selector=selector,
            transform=lambda o: o["metadata"]["labels"].get("role"),
            on_event=rec,
            watch_timeout=1,
            backoff_max=0.5,
        )
        inf.start()
        try:
            assert inf.synced.wait(15)
            assert inf.items() == {"inf-0": "x"} and rec.events == [("SYNC", "", None)]
            for i in (1, 2, 3):
                c.create("/api/v1/nodes", node(f"inf-{i}", suite="informer", role="rr"))
            c.patch("/api/v1/nodes/inf-0", {"metadata": {"labels": {"role": "y"}}})
            c.delete("/api/v1/nodes/inf-3")
            wait_for(lambda: ("DELETED", "inf-3", None) in rec.events, what="the delete")
            watches_then = inf.watches
            wait_for(lambda: inf.watches >= watches_then + 2, what="two more watches")
            assert inf.items() == {"inf-0": "y", "inf-1": "rr", "inf-2": "rr"}
            assert [e for e in rec.events if e[0] != "SYNC"] == [
                ("ADDED", "inf-1", "rr"),
                ("ADDED", "inf-2", "rr"),
                ("ADDED", "inf-3", "rr"),
                ("MODIFIED", "inf-0", "y"),
                ("DELETED", "inf-3", None),
            ]
            assert inf.lists == 1
            assert int(inf.resource_version) > 0
        finally:
            inf.stop()
    assert not inf.running
    lists = [
        e
        for e in cp.audit_events("admin")
        if e["verb"] == "list" and "labelSelector=suite%3Dinformer" in e["requestURI"]
    ]
    watches = [
        e
        for e in cp.audit_events("admin")
        if e["verb"] == "watch" and "labelSelector=suite%3Dinformer" in e["requestURI"]
    ]
    assert len(lists) == 1
    assert len(watches) == inf.watches


def test_informer_relists_after_injected_410(cp: ControlPlane) -> None:
    """Nodes (watch-cached): the informer misses changes while paused with its watch
    ended; the next watch gets an injected ERROR 410; the relist reports the changes."""
    rec = Recorder(pause_key="gone-pause")
    client, faults = fault_client(cp.admin_kubeconfig)
    with client as c:
        for name in ("gone-a", "gone-b"):
            c.create("/api/v1/nodes", node(name, suite="gone", v="1"))
        inf = Informer(
            c,
            "/api/v1/nodes",
            name="gone",
            label_selector="suite=gone",
            on_event=rec,
            watch_timeout=1,
        )
        inf.start()
        try:
            assert inf.synced.wait(15)
            c.create("/api/v1/nodes", node("gone-pause", suite="gone"))
            assert rec.paused.wait(15)
            time.sleep(1.5)  # the server ends the open watch (timeoutSeconds=1)
            c.patch("/api/v1/nodes/gone-a", {"metadata": {"labels": {"v": "2"}}})
            c.delete("/api/v1/nodes/gone-b")
            c.create("/api/v1/nodes", node("gone-c", suite="gone"))
            mark = len(rec.events)
            faults.fail_next("GET", "watch=true", 0, watch_gone=True)
            rec.resume.set()
            wait_for(lambda: len(rec.since(mark)) >= 3, what="synthetic events")
            wait_for(lambda: inf.watches >= 4, what="the watch after the relist")
            got = [(t, k) for t, k, _ in rec.since(mark)]
            assert got == [("DELETED", "gone-b"), ("ADDED", "gone-c"), ("MODIFIED", "gone-a")]
            assert inf.lists == 2 and faults.injected == 1
            assert sorted(inf.keys()) == ["gone-a", "gone-c", "gone-pause"]
            assert labels_of(inf.get("gone-a"))["v"] == "2"
        finally:
            rec.resume.set()
            inf.stop()


def test_informer_relists_after_real_410(cp: ControlPlane) -> None:
    """Configmaps (not watch-cached): same scenario with a real 410 from etcd compaction."""
    rec = Recorder(pause_key=f"{NS}/real-pause")
    with KubeClient.from_kubeconfig(cp.admin_kubeconfig) as c:
        for name in ("real-a", "real-b"):
            c.create(CM, configmap(name, v="1"))
        inf = Informer(
            c,
            CM,
            name="cm",
            transform=lambda o: (o.get("data") or {}).get("v"),
            on_event=rec,
            watch_timeout=1,
        )
        inf.start()
        try:
            assert inf.synced.wait(15)
            c.create(CM, configmap("real-pause"))
            assert rec.paused.wait(15)
            time.sleep(1.5)
            c.patch(api_path("v1", "configmaps", "real-a", namespace=NS), {"data": {"v": "2"}})
            c.delete(api_path("v1", "configmaps", "real-b", namespace=NS))
            c.create(CM, configmap("real-c", v="3"))
            mark = len(rec.events)
            compact_etcd(cp)  # also creates two bump-* configmaps
            rec.resume.set()
            wait_for(lambda: inf.lists == 2, what="the relist")
            wait_for(lambda: f"{NS}/real-c" in inf, what="real-c")
            got = {(t, k, v) for t, k, v in rec.since(mark) if "bump-" not in k}
            assert got == {
                ("DELETED", f"{NS}/real-b", None),
                ("ADDED", f"{NS}/real-c", "3"),
                ("MODIFIED", f"{NS}/real-a", "2"),
            }
            assert isinstance(inf.last_error, Gone)
            assert inf.get(f"{NS}/real-a") == "2"
        finally:
            rec.resume.set()
            inf.stop()
