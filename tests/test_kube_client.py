"""Unit tests of calico_rr.adapters.kube (client + informer) and testing.faults.

Everything runs against ``httpx.MockTransport`` fakes, except the prompt-close tests,
which use a tiny plain-HTTP server on 127.0.0.1 because closing a watch must wake a
thread blocked in a real socket read.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import queue
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from calico_rr.adapters.kube.api import APPLY_PATCH, api_path, resource_of
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Gone,
    KubeConfigError,
    NotFound,
)
from calico_rr.adapters.kube.informer import Informer, object_key
from calico_rr.adapters.kube.watch import WatchEvent
from calico_rr.errors import InputError
from calico_rr.testing.faults import FaultTransport, status_body

Handler = Callable[[httpx.Request], httpx.Response]
BASE = "https://k8s.test:6443"


def make_client(handler: Handler, **kw: Any) -> tuple[KubeClient, list[tuple[str, str, int]]]:
    calls: list[tuple[str, str, int]] = []
    kw.setdefault("backoff_base", 0.001)
    kw.setdefault("backoff_max", 0.01)
    client = KubeClient(
        BASE,
        transport=httpx.MockTransport(handler),
        on_request=lambda v, r, s: calls.append((v, r, s)),
        **kw,
    )
    return client, calls


def status(code: int, reason: str, message: str = "msg") -> httpx.Response:
    return httpx.Response(code, json=status_body(code, reason, message))


def node(name: str, rv: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "resourceVersion": rv, "labels": dict(labels)},
    }


def event_lines(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(json.dumps({"type": t, "object": o}).encode() + b"\n" for t, o in events)


# -- paths ----------------------------------------------------------------------------------


def test_api_path_core_group_and_namespaced() -> None:
    assert api_path("v1", "nodes", "n1") == "/api/v1/nodes/n1"
    assert api_path("v1", "nodes") == "/api/v1/nodes"
    assert (
        api_path("crd.projectcalico.org/v1", "bgppeers")
        == "/apis/crd.projectcalico.org/v1/bgppeers"
    )
    assert (
        api_path("coordination.k8s.io/v1", "leases", "x", namespace="ns")
        == "/apis/coordination.k8s.io/v1/namespaces/ns/leases/x"
    )
    assert api_path("v1", "configmaps", namespace="kube-system") == (
        "/api/v1/namespaces/kube-system/configmaps"
    )
    with pytest.raises(ValueError):
        api_path("", "nodes")


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/nodes/n1", "nodes"),
        ("/api/v1/nodes", "nodes"),
        ("/api/v1/nodes/n1/status", "nodes"),
        ("/api/v1/namespaces", "namespaces"),
        ("/api/v1/namespaces/ns", "namespaces"),
        ("/api/v1/namespaces/ns/status", "namespaces"),
        ("/api/v1/namespaces/ns/configmaps/c", "configmaps"),
        ("/apis/coordination.k8s.io/v1/namespaces/ns/leases/x", "leases"),
        ("/apis/crd.projectcalico.org/v1/bgppeers?limit=5", "bgppeers"),
        ("/apis", "/apis"),
        ("/version", "/version"),
    ],
)
def test_resource_of(path: str, resource: str) -> None:
    assert resource_of(path) == resource


def test_on_request_reports_kubernetes_verbs() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.params.get("watch"):
            return httpx.Response(200, content=b"")
        if req.method == "GET" and req.url.path == "/api/v1/nodes":
            return httpx.Response(200, json={"kind": "NodeList", "metadata": {}, "items": []})
        if req.method == "DELETE":
            return httpx.Response(200, json={"kind": "Status", "status": "Success"})
        return httpx.Response(200, json=node("n1", "1"))

    client, calls = make_client(handler)
    path = api_path("v1", "nodes", "n1")
    client.get(path)
    client.list("/api/v1/nodes")
    list(client.watch("/api/v1/nodes", resource_version="1"))
    client.create("/api/v1/nodes", node("n1", ""))
    client.replace(path, node("n1", "1"))
    client.patch(path, {"metadata": {"labels": {"a": "b"}}})
    client.apply(path, node("n1", ""))
    client.delete(path)
    assert calls == [
        ("get", "nodes", 200),
        ("list", "nodes", 200),
        ("watch", "nodes", 200),
        ("create", "nodes", 200),
        ("update", "nodes", 200),
        ("patch", "nodes", 200),
        ("apply", "nodes", 200),
        ("delete", "nodes", 200),
    ]


# -- errors and retries -------------------------------------------------------------------


def test_retries_429_and_503_honouring_retry_after_then_succeeds() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "0"}, json=status_body(429, "TooManyRequests")),
        httpx.Response(503, json=status_body(503, "ServiceUnavailable")),
        httpx.Response(200, json=node("n1", "7")),
    ]

    def handler(req: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    client, calls = make_client(handler)
    got = client.get("/api/v1/nodes/n1")
    assert got is not None and got["metadata"]["resourceVersion"] == "7"
    assert [c[2] for c in calls] == [429, 503, 200]


def test_retry_after_is_capped_at_backoff_max() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "120"}), httpx.Response(200, json={})]
    client, calls = make_client(lambda req: answers.pop(0), backoff_max=0.05)
    start = time.monotonic()
    assert client.request("GET", "/api/v1/nodes/n1") == {}
    assert time.monotonic() - start < 2.0
    assert len(calls) == 2


def test_retries_give_up_after_max_retries() -> None:
    client, calls = make_client(lambda req: status(503, "ServiceUnavailable"), max_retries=2)
    with pytest.raises(ApiError) as err:
        client.get("/api/v1/nodes/n1")
    assert err.value.status == 503 and err.value.reason == "ServiceUnavailable"
    assert len(calls) == 3


@pytest.mark.parametrize("code", [400, 401, 403, 409, 422])
def test_no_retry_on_other_4xx(code: int) -> None:
    client, calls = make_client(lambda req: status(code, "Nope", "denied"))
    with pytest.raises(ApiError) as err:
        client.request("PUT", "/api/v1/nodes/n1", body={})
    assert err.value.status == code
    assert len(calls) == 1


def test_connection_errors_are_retried_then_status_0() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    client, calls = make_client(handler, max_retries=3)
    with pytest.raises(ApiError) as err:
        client.list("/api/v1/nodes")
    assert err.value.status == 0 and err.value.reason == "ConnectionError"
    assert calls == [("list", "nodes", 0)] * 4


def test_connection_error_then_success() -> None:
    n = {"calls": 0}

    def handler(req: httpx.Request) -> httpx.Response:
        n["calls"] += 1
        if n["calls"] == 1:
            raise httpx.ReadTimeout("slow", request=req)
        return httpx.Response(200, json=node("n1", "3"))

    client, calls = make_client(handler)
    assert client.get("/api/v1/nodes/n1") is not None
    assert [c[2] for c in calls] == [0, 200]


def test_error_mapping_and_message() -> None:
    answers = {
        "/api/v1/nodes/missing": status(404, "NotFound", 'nodes "missing" not found'),
        "/api/v1/nodes/stale": status(409, "Conflict", "the object has been modified"),
        "/api/v1/nodes/exists": status(409, "AlreadyExists", 'nodes "exists" already exists'),
        "/api/v1/nodes/old": status(410, "Expired", "too old"),
        "/api/v1/nodes/text": httpx.Response(500, text="boom\nsecond line"),
    }
    client, _ = make_client(lambda req: answers[req.url.path], max_retries=0)
    with pytest.raises(NotFound) as nf:
        client.request("GET", "/api/v1/nodes/missing")
    assert nf.value.status == 404 and nf.value.reason == "NotFound"
    assert str(nf.value) == 'GET /api/v1/nodes/missing: 404 NotFound: nodes "missing" not found'
    with pytest.raises(Conflict) as cf:
        client.replace("/api/v1/nodes/stale", node("stale", "1"))
    assert not isinstance(cf.value, AlreadyExists) and cf.value.reason == "Conflict"
    with pytest.raises(AlreadyExists) as ae:
        client.request("POST", "/api/v1/nodes/exists", body={})
    assert isinstance(ae.value, Conflict) and ae.value.body["code"] == 409
    with pytest.raises(Gone) as gone:
        client.request("GET", "/api/v1/nodes/old")
    assert gone.value.status == 410 and gone.value.reason == "Expired"
    with pytest.raises(ApiError) as other:
        client.request("GET", "/api/v1/nodes/text")
    assert other.value.status == 500 and other.value.reason == "InternalError"
    assert "\n" not in str(other.value) and "boom second line" in str(other.value)
    assert client.get("/api/v1/nodes/missing") is None
    assert client.delete("/api/v1/nodes/missing") is False


# -- verbs --------------------------------------------------------------------------------


def test_apply_sends_apply_patch_with_field_manager_and_force() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=json.loads(req.content))

    client, _ = make_client(handler, field_manager="rr-operator")
    obj = node("n1", "")
    assert client.apply("/api/v1/nodes/n1", obj) == obj
    client.apply("/api/v1/nodes/n1", obj, force=True, subresource="status")
    first, second = seen
    assert first.method == "PATCH" and second.method == "PATCH"
    assert first.headers["Content-Type"] == APPLY_PATCH == "application/apply-patch+yaml"
    assert first.url.path == "/api/v1/nodes/n1"
    assert dict(first.url.params) == {"fieldManager": "rr-operator"}
    assert second.url.path == "/api/v1/nodes/n1/status"
    assert dict(second.url.params) == {"fieldManager": "rr-operator", "force": "true"}
    assert yaml.safe_load(first.content) == obj  # JSON body is valid YAML


@pytest.mark.parametrize(
    ("patch_type", "content_type"),
    [
        ("merge", "application/merge-patch+json"),
        ("json", "application/json-patch+json"),
        ("strategic", "application/strategic-merge-patch+json"),
    ],
)
def test_patch_content_types(patch_type: str, content_type: str) -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json=node("n1", "2"))

    client, _ = make_client(handler)
    body: Any = [{"op": "add", "path": "/x", "value": 1}] if patch_type == "json" else {"x": 1}
    client.patch("/api/v1/nodes/n1", body, patch_type=patch_type)
    assert seen[0].headers["Content-Type"] == content_type
    assert json.loads(seen[0].content) == body
    with pytest.raises(ValueError):
        client.patch("/api/v1/nodes/n1", body, patch_type="yaml")


def test_create_replace_delete_requests() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.method == "DELETE":
            return httpx.Response(200, json={"kind": "Status", "status": "Success"})
        return httpx.Response(201 if req.method == "POST" else 200, json=json.loads(req.content))

    client, _ = make_client(handler)
    client.create("/api/v1/nodes", node("n1", ""))
    client.replace("/api/v1/nodes/n1", node("n1", "5"))
    assert client.delete("/api/v1/nodes/n1", resource_version="5") is True
    assert client.delete("/api/v1/nodes/n2") is True
    post, put, delete, plain = seen
    assert (post.method, post.url.path) == ("POST", "/api/v1/nodes")
    assert (put.method, put.url.path) == ("PUT", "/api/v1/nodes/n1")
    assert json.loads(put.content)["metadata"]["resourceVersion"] == "5"
    assert json.loads(delete.content) == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"resourceVersion": "5"},
    }
    assert plain.content == b""


def test_list_follows_continue_and_fills_kind() -> None:
    pages: dict[str | None, dict[str, Any]] = {
        None: {"items": [node("a", "1"), node("b", "2")], "continue": "t1", "rv": "10"},
        "t1": {"items": [node("c", "3"), node("d", "4")], "continue": "t2", "rv": "10"},
        "t2": {"items": [node("e", "5")], "continue": "", "rv": "10"},
    }
    seen: list[dict[str, str]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        params = dict(req.url.params)
        seen.append(params)
        page = pages[params.get("continue")]
        items = [
            {k: v for k, v in item.items() if k not in ("kind", "apiVersion")}
            for item in page["items"]
        ]
        return httpx.Response(
            200,
            json={
                "apiVersion": "v1",
                "kind": "NodeList",
                "metadata": {"resourceVersion": page["rv"], "continue": page["continue"]},
                "items": items,
            },
        )

    client, calls = make_client(handler)
    items, rv = client.list("/api/v1/nodes", label_selector="zone=a", field_selector="x=y", limit=2)
    assert [i["metadata"]["name"] for i in items] == ["a", "b", "c", "d", "e"]
    assert rv == "10"
    assert all(i["kind"] == "Node" and i["apiVersion"] == "v1" for i in items)
    assert seen[0] == {"limit": "2", "labelSelector": "zone=a", "fieldSelector": "x=y"}
    assert [s.get("continue") for s in seen] == [None, "t1", "t2"]
    assert len(calls) == 3


def test_list_restarts_once_when_continue_token_expires() -> None:
    expired = {"n": 0}

    def handler(req: httpx.Request) -> httpx.Response:
        token = req.url.params.get("continue")
        if token == "stale" and expired["n"] < expired.get("limit", 1):
            expired["n"] += 1
            return status(410, "Expired", "continue token expired")
        if token is None:
            meta = {"resourceVersion": str(100 + expired["n"]), "continue": "stale"}
            return httpx.Response(200, json={"metadata": meta, "items": [node("a", "1")]})
        return httpx.Response(200, json={"metadata": {}, "items": [node("b", "2")]})

    client, calls = make_client(handler)
    items, rv = client.list("/api/v1/nodes", limit=1)
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    assert rv == "101"  # the restarted chain's version
    assert [c[2] for c in calls] == [200, 410, 200, 200]
    expired.update(n=0, limit=5)
    with pytest.raises(Gone):
        client.list("/api/v1/nodes", limit=1)


def test_list_gone_on_first_page_is_raised() -> None:
    client, calls = make_client(lambda req: status(410, "Expired"))
    with pytest.raises(Gone):
        client.list("/api/v1/nodes")
    assert len(calls) == 1


def test_served_groups() -> None:
    body = {"kind": "APIGroupList", "groups": [{"name": "apps"}, {"name": "crd.projectcalico.org"}]}
    client, calls = make_client(lambda req: httpx.Response(200, json=body))
    assert client.served_groups() == {"apps", "crd.projectcalico.org"}
    assert calls == [("get", "/apis", 200)]


def test_concurrent_requests_from_threads() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=node(req.url.path.rsplit("/", 1)[-1], "1"))

    client, calls = make_client(handler)
    results: dict[str, str] = {}

    def worker(i: int) -> None:
        for j in range(20):
            got = client.get(f"/api/v1/nodes/n{i}-{j}")
            assert got is not None
            results[f"n{i}-{j}"] = got["metadata"]["name"]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 80 and all(k == v for k, v in results.items())
    assert len(calls) == 80


# -- authentication and configuration -----------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key (used as CA and as client cert)."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-new", "-nodes", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", "tls.key",
            "-out", "tls.crt", "-days", "2", "-subj", "/CN=calico-rr-unit",
        ],
        cwd=d,
        check=True,
        capture_output=True,
    )  # fmt: skip
    return d / "tls.crt", d / "tls.key"


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": cluster},
            {"name": "other", "cluster": {"server": "https://other.test"}},
        ],
        "users": [{"name": "u", "user": user}, {"name": "nobody", "user": {}}],
        "contexts": [
            {"name": "main", "context": {"cluster": "c", "user": "u"}},
            {"name": "alt", "context": {"cluster": "other", "user": "nobody"}},
        ],
        "current-context": "main",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def auth_header_client(client_factory: Callable[..., KubeClient]) -> tuple[KubeClient, list[str]]:
    headers: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        headers.append(req.headers.get("Authorization", ""))
        return httpx.Response(200, json={})

    return client_factory(transport=httpx.MockTransport(handler)), headers


def test_kubeconfig_relative_files_and_token(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    crt, key = tls_files
    conf_dir = tmp_path / "conf"
    (conf_dir / "pki").mkdir(parents=True)
    (conf_dir / "pki" / "ca.crt").write_bytes(crt.read_bytes())
    (conf_dir / "pki" / "me.crt").write_bytes(crt.read_bytes())
    (conf_dir / "pki" / "me.key").write_bytes(key.read_bytes())
    kc = write_kubeconfig(
        conf_dir / "config",
        {"server": "https://k8s.test:6443/prefix", "certificate-authority": "pki/ca.crt"},
        {"client-certificate": "pki/me.crt", "client-key": "pki/me.key", "token": "s3cret"},
    )
    client = KubeClient.from_kubeconfig(kc)
    assert client.base_url == "https://k8s.test:6443/prefix"
    assert client.ssl_context is not None
    assert [c["subject"] for c in client.ssl_context.get_ca_certs()] == [
        ((("commonName", "calico-rr-unit"),),)
    ]
    mocked, headers = auth_header_client(lambda **kw: KubeClient.from_kubeconfig(kc, **kw))
    mocked.request("GET", "/api/v1/nodes")
    assert headers == ["Bearer s3cret"]
    alt = KubeClient.from_kubeconfig(kc, context="alt")
    assert alt.base_url == "https://other.test"


def test_kubeconfig_data_variants_leave_no_files(
    tmp_path: Path, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    crt, key = tls_files
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    kc = write_kubeconfig(
        tmp_path / "kc",
        {"server": "https://k8s.test", "certificate-authority-data": b64(crt)},
        {"client-certificate-data": b64(crt), "client-key-data": b64(key)},
    )
    client = KubeClient.from_kubeconfig(kc)
    assert client.ssl_context is not None and len(client.ssl_context.get_ca_certs()) == 1
    assert list(scratch.iterdir()) == []
    bad = write_kubeconfig(
        tmp_path / "bad",
        {"server": "https://k8s.test", "certificate-authority-data": b64(crt)},
        {"client-certificate-data": b64(crt), "client-key-data": b64(crt)},  # not a key
    )
    with pytest.raises(KubeConfigError, match="TLS setup failed"):
        KubeClient.from_kubeconfig(bad)
    assert list(scratch.iterdir()) == []


def test_kubeconfig_insecure_and_token_file_reread(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    kc = write_kubeconfig(
        tmp_path / "kc",
        {"server": "https://k8s.test", "insecure-skip-tls-verify": True},
        {"tokenFile": "token"},
    )
    client = KubeClient.from_kubeconfig(kc)
    assert client.ssl_context is not None
    assert client.ssl_context.verify_mode == ssl.CERT_NONE and not client.ssl_context.check_hostname
    mocked, headers = auth_header_client(lambda **kw: KubeClient.from_kubeconfig(kc, **kw))
    mocked.request("GET", "/api/v1/nodes")
    token_file.write_text("second-token\n")
    st = token_file.stat()
    os.utime(token_file, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    mocked.request("GET", "/api/v1/nodes")
    assert headers == ["Bearer first", "Bearer second-token"]


def test_kubeconfig_errors(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="cannot read kubeconfig"):
        KubeClient.from_kubeconfig(tmp_path / "missing")
    kc = write_kubeconfig(tmp_path / "kc", {"server": "https://k8s.test"}, {})
    with pytest.raises(KubeConfigError, match="no context named 'nope'"):
        KubeClient.from_kubeconfig(kc, context="nope")
    provider_kc = write_kubeconfig(
        tmp_path / "provider", {"server": "https://k8s.test"}, {"auth-provider": {"name": "oidc"}}
    )
    with pytest.raises(KubeConfigError, match="auth-provider plugins are not supported"):
        KubeClient.from_kubeconfig(provider_kc)
    no_server = write_kubeconfig(tmp_path / "ns", {}, {})
    with pytest.raises(KubeConfigError, match="no server") as err:
        KubeClient.from_kubeconfig(no_server)
    assert isinstance(err.value, InputError)


def test_in_cluster(
    tmp_path: Path, tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "ca.crt").write_bytes(tls_files[0].read_bytes())
    (sa / "token").write_text("pod-token")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    client, headers = auth_header_client(
        lambda **kw: KubeClient.in_cluster(service_account_dir=sa, **kw)
    )
    assert client.base_url == "https://[fd00::1]:443"
    client.request("GET", "/api/v1/nodes")
    assert headers == ["Bearer pod-token"]
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        KubeClient.in_cluster(service_account_dir=sa)


def test_load_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write_kubeconfig(tmp_path / "explicit", {"server": "https://explicit.test"}, {})
    env = write_kubeconfig(tmp_path / "env", {"server": "https://env.test"}, {})
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KUBECONFIG", f"{env}{os.pathsep}{explicit}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert KubeClient.load(explicit).base_url == "https://explicit.test"
    assert KubeClient.load().base_url == "https://env.test"
    monkeypatch.delenv("KUBECONFIG")
    with pytest.raises(KubeConfigError, match="no Kubernetes configuration"):
        KubeClient.load()
    write_kubeconfig(home / ".kube" / "config", {"server": "https://home.test"}, {})
    assert KubeClient.load().base_url == "https://home.test"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with pytest.raises(KubeConfigError, match="service-account CA"):
        KubeClient.load()  # in-cluster wins over ~/.kube/config (no SA files here)


# -- watch --------------------------------------------------------------------------------


class Chunks(httpx.SyncByteStream):
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks


def test_watch_parses_events_split_across_chunks() -> None:
    raw = event_lines(
        ("ADDED", node("a", "11")),
        ("MODIFIED", node("a", "12", zone="z1")),
        ("BOOKMARK", {"kind": "Node", "apiVersion": "v1", "metadata": {"resourceVersion": "20"}}),
        ("DELETED", node("a", "21")),
    )
    chunks = [raw[i : i + 37] for i in range(0, len(raw), 37)] + [b"\n\n"]
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, stream=Chunks(*chunks))

    client, _ = make_client(handler)
    events = list(
        client.watch(
            "/api/v1/nodes", resource_version="10", label_selector="a=b", timeout_seconds=60
        )
    )
    assert [(e.type, e.object["metadata"]["resourceVersion"]) for e in events] == [
        ("ADDED", "11"),
        ("MODIFIED", "12"),
        ("BOOKMARK", "20"),
        ("DELETED", "21"),
    ]
    assert events[1] == WatchEvent("MODIFIED", node("a", "12", zone="z1"))
    assert dict(seen[0].url.params) == {
        "watch": "true",
        "resourceVersion": "10",
        "timeoutSeconds": "60",
        "allowWatchBookmarks": "true",
        "labelSelector": "a=b",
    }
    assert seen[0].extensions["timeout"]["read"] == pytest.approx(75.0)
    assert seen[0].headers["Connection"] == "close"  # never a pooled connection


def test_watch_error_410_event_raises_gone_after_earlier_events() -> None:
    raw = event_lines(("ADDED", node("a", "11")), ("ERROR", status_body(410, "Expired", "too old")))
    client, _ = make_client(lambda req: httpx.Response(200, content=raw))
    w = client.watch("/api/v1/nodes", resource_version="5")
    assert next(w).type == "ADDED"
    with pytest.raises(Gone) as err:
        next(w)
    assert err.value.status == 410 and "too old" in err.value.message
    with pytest.raises(StopIteration):
        next(w)


def test_watch_other_errors() -> None:
    answers = [
        httpx.Response(200, content=event_lines(("ERROR", status_body(500, "InternalError")))),
        httpx.Response(200, content=b'{"type": "ADDED", "obj\n'),
        status(410, "Gone", "gone before streaming"),
        status(403, "Forbidden"),
    ]
    client, calls = make_client(lambda req: answers.pop(0))
    with pytest.raises(ApiError) as e500:
        list(client.watch("/api/v1/nodes", resource_version="1"))
    assert e500.value.status == 500 and not isinstance(e500.value, Gone)
    with pytest.raises(ApiError, match="malformed watch event"):
        list(client.watch("/api/v1/nodes", resource_version="1"))
    with pytest.raises(Gone):
        client.watch("/api/v1/nodes", resource_version="1")
    with pytest.raises(ApiError) as e403:
        client.watch("/api/v1/nodes", resource_version="1")
    assert e403.value.status == 403
    assert [c[2] for c in calls] == [200, 200, 410, 403]


class _StreamingHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with one watch event, then keeps the stream open."""

    protocol_version = "HTTP/1.1"
    stop = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        line = event_lines(("ADDED", node("a", "1")))
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()
        self.stop.wait(20)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def streaming_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StreamingHandler)
    server.daemon_threads = True
    _StreamingHandler.stop.clear()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _StreamingHandler.stop.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("how", ["watch", "client"])
def test_close_from_another_thread_ends_a_blocked_watch(streaming_server: str, how: str) -> None:
    client = KubeClient(streaming_server, verify=False)
    w = client.watch("/api/v1/nodes", resource_version="1")
    got: list[str] = []
    done = threading.Event()

    def consume() -> None:
        got.extend(e.type for e in w)
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.3)  # the consumer is now blocked reading the open stream
    assert not done.is_set() and got == ["ADDED"]
    start = time.monotonic()
    (w.close if how == "watch" else client.close)()
    assert done.wait(2.0), "watch did not stop"
    assert time.monotonic() - start < 1.0
    assert w.closed
    if how == "client":
        with pytest.raises(ApiError, match="ClientClosed"):
            client.get("/api/v1/nodes/a")
    else:
        client.close()


# -- fault transport ----------------------------------------------------------------------


def test_fault_transport_injects_then_passes_through() -> None:
    inner_calls: list[str] = []

    def inner(req: httpx.Request) -> httpx.Response:
        inner_calls.append(f"{req.method} {req.url.path}")
        if req.url.params.get("watch"):
            return httpx.Response(200, content=event_lines(("ADDED", node("a", "2"))))
        return httpx.Response(200, json=node("n1", "1"))

    faults = FaultTransport(httpx.MockTransport(inner))
    client = KubeClient(BASE, transport=faults, backoff_base=0.001, backoff_max=0.01)
    faults.fail_next("PATCH", "/api/v1/nodes/n1", 409)
    faults.fail_next(None, "/api/v1/nodes/n1", 503, times=2, headers={"Retry-After": "0"})
    faults.fail_next("GET", "watch=true", 0, watch_gone=True)
    faults.fail_next("DELETE", "/nodes/", 0)
    assert faults.pending == 5
    with pytest.raises(Conflict):
        client.patch("/api/v1/nodes/n1", {})
    assert inner_calls == []  # the injected 409 never reached the server
    assert client.get("/api/v1/nodes/n1") is not None  # two 503s retried
    with pytest.raises(Gone):
        list(client.watch("/api/v1/nodes", resource_version="1"))
    assert [e.type for e in client.watch("/api/v1/nodes", resource_version="1")] == ["ADDED"]
    assert client.delete("/api/v1/nodes/n1") is True  # connection error retried
    assert faults.injected == 5 and faults.pending == 0
    assert inner_calls == ["GET /api/v1/nodes/n1", "GET /api/v1/nodes", "DELETE /api/v1/nodes/n1"]
    assert [s for _, _, s in faults.log] == [409, 503, 503, 200, 200, 200, 0, 200]


# -- informer -----------------------------------------------------------------------------


class FakeApi:
    """A scripted API server for one collection: LISTs come from ``objects``; each
    WATCH takes the next script entry (a list of events, or an int HTTP status, or
    "gone" for an ERROR 410 event); when the script is empty a watch blocks until
    ``release`` is set."""

    def __init__(self, objects: dict[str, dict[str, Any]], rv: str) -> None:
        self.objects = objects
        self.rv = rv
        self.script: list[Any] = []
        self.lists: list[dict[str, str]] = []
        self.watch_rvs: list[str] = []
        self.release = threading.Event()
        self.blocked = threading.Event()
        self.before_watch: dict[int, Callable[[], None]] = {}

    def __call__(self, req: httpx.Request) -> httpx.Response:
        params = dict(req.url.params)
        if params.get("watch") == "true":
            self.watch_rvs.append(params["resourceVersion"])
            hook = self.before_watch.get(len(self.watch_rvs))
            if hook:
                hook()
            if not self.script:
                return httpx.Response(200, stream=_Blocking(self))
            step = self.script.pop(0)
            if isinstance(step, queue.Queue):
                return httpx.Response(200, stream=_Queued(step))
            if isinstance(step, int):
                return status(step, "InternalError")
            if step == "gone":
                return httpx.Response(
                    200, content=event_lines(("ERROR", status_body(410, "Expired")))
                )
            return httpx.Response(200, content=event_lines(*step))
        self.lists.append(params)
        meta = {"resourceVersion": self.rv}
        return httpx.Response(
            200, json={"kind": "NodeList", "metadata": meta, "items": list(self.objects.values())}
        )


class _Queued(httpx.SyncByteStream):
    """Streams the byte strings put into a queue until None."""

    def __init__(self, q: queue.Queue[bytes | None]) -> None:
        self.q = q

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := self.q.get(timeout=10)) is not None:
            yield chunk


class _Blocking(httpx.SyncByteStream):
    def __init__(self, api: FakeApi) -> None:
        self.api = api

    def __iter__(self) -> Iterator[bytes]:
        self.api.blocked.set()
        self.api.release.wait(10)
        yield b""


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_informer_list_watch_rewatch_gone_relist() -> None:
    api = FakeApi({"a": node("a", "10"), "b": node("b", "11")}, "11")
    api.script = [
        [
            ("ADDED", node("c", "12")),
            ("MODIFIED", node("a", "13", x="1")),
            ("BOOKMARK", {"metadata": {"resourceVersion": "20"}}),
        ],
        [("DELETED", node("b", "21"))],
        "gone",
    ]

    def before_relist() -> None:  # the world changes while the informer is blind
        api.objects = {"a": node("a", "30", x="2"), "d": node("d", "31")}
        api.rv = "40"

    api.before_watch[3] = before_relist
    client, _ = make_client(api)
    events: list[tuple[str, str, Any]] = []
    gones: list[int] = []
    inf = Informer(
        client,
        "/api/v1/nodes",
        name="nodes",
        transform=lambda o: o["metadata"]["labels"].get("x", "-"),
        on_event=lambda t, k, v: events.append((t, k, v)),
        backoff_max=0.01,
        on_gone=lambda: gones.append(len(events)),
    )
    inf.start()
    try:
        assert inf.synced.wait(5)
        wait_for(api.blocked.is_set)
        # told once, after the 4 watched events and before the re-LIST's synthetic ones
        assert gones == [4]
        assert events == [
            ("SYNC", "", None),
            ("ADDED", "c", "-"),
            ("MODIFIED", "a", "1"),
            ("DELETED", "b", None),
            ("DELETED", "c", None),
            ("ADDED", "d", "-"),
            ("MODIFIED", "a", "2"),
        ]
        assert inf.lists == 2 and len(api.lists) == 2
        assert inf.gone == 1  # the one re-LIST was caused by the 410
        assert inf.watches == 4
        assert api.watch_rvs == ["11", "20", "21", "40"]
        assert inf.items() == {"a": "2", "d": "-"}
        assert inf.get("a") == "2" and inf.get("b") is None
        assert sorted(inf.keys()) == ["a", "d"] and len(inf) == 2 and "d" in inf
        assert inf.resource_version == "40"
        assert isinstance(inf.last_error, Gone)
    finally:
        api.release.set()
        inf.stop()
    assert not inf.running


def test_informer_backs_off_and_rewatches_without_relist_on_errors() -> None:
    api = FakeApi({"a": node("a", "5")}, "5")
    api.script = [500, [("ADDED", node("b", "6"))], 403, [("MODIFIED", node("b", "7"))]]
    client, calls = make_client(api, max_retries=0)
    inf = Informer(client, "/api/v1/nodes", name="nodes", backoff_max=0.01)
    inf.start()
    try:
        wait_for(api.blocked.is_set)
        assert inf.lists == 1
        assert inf.watches == 5
        assert api.watch_rvs == ["5", "5", "6", "6", "7"]
        assert inf.get("b") == node("b", "7")
        assert isinstance(inf.last_error, ApiError) and inf.last_error.status == 403
        assert [c for c in calls if c[0] == "list"] == [("list", "nodes", 200)]
    finally:
        api.release.set()
        inf.stop()


def test_informer_retries_failed_initial_list_and_survives_callback_errors() -> None:
    api = FakeApi(
        {"ns/a": {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "3"}}}, "3"
    )
    api.script = [
        [("ADDED", {"metadata": {"name": "b", "namespace": "ns", "resourceVersion": "4"}})]
    ]
    failing = {"n": 2}
    inner = api

    def handler(req: httpx.Request) -> httpx.Response:
        if not req.url.params.get("watch") and failing["n"] > 0:
            failing["n"] -= 1
            return status(503, "ServiceUnavailable")
        return inner(req)

    client, _ = make_client(handler, max_retries=0)
    seen: list[str] = []

    def on_event(t: str, k: str, v: Any) -> None:
        seen.append(f"{t} {k}")
        raise RuntimeError("consumer bug")

    inf = Informer(
        client, "/api/v1/namespaces/ns/configmaps", name="cm", on_event=on_event, backoff_max=0.01
    )
    inf.start()
    try:
        wait_for(api.blocked.is_set)
        assert inf.lists == 3  # two failed attempts + the good one
        assert seen == ["SYNC ", "ADDED ns/b"]
        assert sorted(inf.keys()) == ["ns/a", "ns/b"]
    finally:
        api.release.set()
        inf.stop()


def test_object_key() -> None:
    assert object_key({"metadata": {"name": "n1"}}) == "n1"
    assert object_key({"metadata": {"name": "l", "namespace": "kube-system"}}) == "kube-system/l"


def test_informer_start_twice_is_an_error() -> None:
    api = FakeApi({}, "1")
    client, _ = make_client(api)
    inf = Informer(client, "/api/v1/nodes", name="n")
    inf.start()
    try:
        with pytest.raises(RuntimeError):
            inf.start()
    finally:
        api.release.set()
        inf.stop()


def test_informer_store_and_forget_write_through() -> None:
    api = FakeApi({"a": node("a", "10", x="old")}, "10")
    feed: queue.Queue[bytes | None] = queue.Queue()
    api.script = [feed]
    client, _ = make_client(api)
    events: list[tuple[str, str, Any]] = []
    inf = Informer(
        client,
        "/api/v1/nodes",
        name="nodes",
        transform=lambda o: o["metadata"]["labels"]["x"],
        on_event=lambda t, k, v: events.append((t, k, v)),
    )
    inf.start()
    try:
        assert inf.synced.wait(5)
        assert inf.store(node("a", "12", x="ours")) is True  # our write, ahead of the watch
        assert inf.get("a") == "ours"
        assert inf.store(node("a", "11", x="older")) is False  # older than what we stored
        assert inf.store(node("b", "9", x="stale")) is False  # older than the informer
        assert inf.get("a") == "ours" and "b" not in inf
        feed.put(event_lines(("MODIFIED", node("a", "11", x="theirs"))))
        wait_for(lambda: inf.resource_version == "11")
        assert inf.get("a") == "ours"  # the older event does not undo our write
        feed.put(event_lines(("MODIFIED", node("a", "12", x="ours"))))
        wait_for(lambda: inf.resource_version == "12")
        feed.put(event_lines(("MODIFIED", node("a", "13", x="later"))))
        wait_for(lambda: inf.resource_version == "13")
        assert inf.get("a") == "later"
        assert inf.store(node("a", "12", x="ours")) is False
        assert events == [("SYNC", "", None), ("MODIFIED", "a", "ours"), ("MODIFIED", "a", "later")]
        assert inf.forget("a") is True and "a" not in inf and inf.forget("a") is False
    finally:
        feed.put(None)
        api.release.set()
        inf.stop()
