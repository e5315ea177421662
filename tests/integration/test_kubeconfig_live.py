"""Kubeconfig features against a real kube-apiserver (calico_rr.sandbox).

The API server also authenticates bearer tokens from a static token file
(``--token-auth-file``), so a real exec credential plugin (a script written here,
counting its runs in a file) can log the client in: its token is cached, fetched
again after its expirationTimestamp and after a 401.  Also: KUBECONFIG with two
merged files, ``--context`` through the CLI, ``tls-server-name`` (the server's
certificate names 127.0.0.1 and localhost) and ``proxy-url`` through a small
CONNECT proxy run in a thread.
"""

from __future__ import annotations

import json
import os
import select
import socket
import socketserver
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError
from calico_rr.cli import app
from calico_rr.sandbox import ControlPlane, apply_crds, request
from calico_rr.sandbox.manifests import calico_crds

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-calico-rr"
NODES = api_path("v1", "nodes")
EXEC_V1 = "client.authentication.k8s.io/v1"


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    tokens = tmp_path_factory.mktemp("auth") / "tokens.csv"
    tokens.write_text(f'{TOKEN},token-admin,1001,"system:masters"\n')
    with ControlPlane(extra_apiserver_args=(f"--token-auth-file={tokens}",)) as plane:
        apply_crds(plane, calico_crds("crd.projectcalico.org-v1"))
        for name in ("node-a", "node-b"):
            status, body = request(
                plane,
                "POST",
                NODES,
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}},
            )
            assert status == 201, body
        yield plane


def kubeconfig(
    path: Path,
    cluster: dict[str, Any],
    user: dict[str, Any] | None,
    *,
    extra_contexts: dict[str, dict[str, Any]] | None = None,
    current: str | None = "main",
) -> Path:
    """A kubeconfig with cluster ``c``, user ``u`` and context ``main`` (either may
    be left out with None, to split them over files)."""
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    if cluster:
        doc["clusters"] = [{"name": "c", "cluster": cluster}]
    if user is not None:
        doc["users"] = [{"name": "u", "user": user}]
        doc["contexts"] = [{"name": "main", "context": {"cluster": "c", "user": "u"}}]
        for name, ctx in (extra_contexts or {}).items():
            doc["contexts"].append({"name": name, "context": ctx})
    if current:
        doc["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def cluster_of(cp: ControlPlane, **extra: Any) -> dict[str, Any]:
    return {"server": cp.url, "certificate-authority": str(cp.ca_file), **extra}


# -- a real exec plugin -----------------------------------------------------------------

PLUGIN = """\
import datetime, json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
runs_file = os.path.join(here, "runs")
runs = int(open(runs_file).read()) if os.path.exists(runs_file) else 0
open(runs_file, "w").write(str(runs + 1))
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert info["spec"]["interactive"] is False
tokens = open(os.path.join(here, "tokens")).read().split()
token = tokens[min(runs, len(tokens) - 1)]
ttl = float(os.environ["TOKEN_TTL"])
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=ttl)
status = {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
"""


class Plugin:
    """The plugin script in its own directory: the tokens it hands out, in order
    (the last one again and again), and how many times it ran."""

    def __init__(self, directory: Path, *tokens: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "get-token"
        self.path.write_text(f"#!{sys.executable}\n{PLUGIN}")
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)
        (directory / "tokens").write_text("\n".join(tokens) + "\n")
        self.runs_file = directory / "runs"

    @property
    def runs(self) -> int:
        return int(self.runs_file.read_text()) if self.runs_file.exists() else 0

    def user(self, ttl: float, command: str | None = None) -> dict[str, Any]:
        return {
            "exec": {
                "apiVersion": EXEC_V1,
                "command": command or str(self.path),
                "env": [{"name": "TOKEN_TTL", "value": str(ttl)}],
                "interactiveMode": "Never",
                "installHint": "the test writes it",
            }
        }


def node_names(client: KubeClient) -> list[str]:
    items, _ = client.list(NODES)
    return sorted(i["metadata"]["name"] for i in items)


def test_exec_plugin_token_is_cached_for_its_lifetime(cp: ControlPlane, tmp_path: Path) -> None:
    plugin = Plugin(tmp_path / "plugin", TOKEN)
    kc = kubeconfig(tmp_path / "kc", cluster_of(cp), plugin.user(ttl=3600))
    with KubeClient.from_kubeconfig(kc) as client:
        for _ in range(3):
            assert node_names(client) == ["node-a", "node-b"]
    assert plugin.runs == 1


def test_exec_plugin_runs_again_after_expiry(cp: ControlPlane, tmp_path: Path) -> None:
    plugin = Plugin(tmp_path / "plugin", TOKEN)
    kc = kubeconfig(tmp_path / "kc", cluster_of(cp), plugin.user(ttl=2))
    with KubeClient.from_kubeconfig(kc) as client:
        assert node_names(client) == ["node-a", "node-b"]
        assert plugin.runs == 1
        # The timestamp has whole seconds: 3 s is past it whatever the rounding.
        time.sleep(3.0)
        assert node_names(client) == ["node-a", "node-b"]
    assert plugin.runs == 2


def test_exec_plugin_runs_again_once_after_a_401(cp: ControlPlane, tmp_path: Path) -> None:
    plugin = Plugin(tmp_path / "plugin", "revoked-token", TOKEN)
    kc = kubeconfig(tmp_path / "kc", cluster_of(cp), plugin.user(ttl=3600))
    with KubeClient.from_kubeconfig(kc) as client:
        assert node_names(client) == ["node-a", "node-b"]
        assert plugin.runs == 2
        assert node_names(client) == ["node-a", "node-b"]
        assert plugin.runs == 2
    # A plugin whose tokens the server never accepts: one re-run, then the 401.
    bad = Plugin(tmp_path / "bad", "wrong-token")
    kc_bad = kubeconfig(tmp_path / "kc-bad", cluster_of(cp), bad.user(ttl=3600))
    with KubeClient.from_kubeconfig(kc_bad) as client, pytest.raises(ApiError) as err:
        client.list(NODES)
    assert err.value.status == 401
    assert bad.runs == 2


def test_two_merged_files_and_relative_paths(
    cp: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cluster (with a CA path relative to its file) in one file, the user (an
    # exec plugin named relative to its file) and the context in another.
    (tmp_path / "clusters" / "pki").mkdir(parents=True)
    (tmp_path / "clusters" / "pki" / "ca.crt").write_bytes(cp.ca_file.read_bytes())
    clusters = kubeconfig(
        tmp_path / "clusters" / "config",
        {"server": cp.url, "certificate-authority": "pki/ca.crt"},
        None,
        current=None,
    )
    plugin = Plugin(tmp_path / "users" / "bin", TOKEN)
    users = kubeconfig(
        tmp_path / "users" / "config", {}, plugin.user(ttl=3600, command="bin/get-token")
    )
    monkeypatch.setenv(
        "KUBECONFIG", os.pathsep.join([str(tmp_path / "missing"), str(clusters), str(users)])
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with KubeClient.load() as client:
        assert node_names(client) == ["node-a", "node-b"]
    assert plugin.runs == 1


def test_cli_context_picks_the_context(cp: ControlPlane, tmp_path: Path) -> None:
    # current-context "main" authenticates with a token the server refuses; --context
    # "good" names the admin user (client certificate of the control plane).
    admin = yaml.safe_load(cp.admin_kubeconfig.read_text())
    kc = kubeconfig(
        tmp_path / "kc",
        cluster_of(cp),
        {"token": "not-a-valid-token"},
        extra_contexts={"good": {"cluster": "c", "user": "admin"}},
    )
    doc = yaml.safe_load(kc.read_text())
    doc["users"].append({"name": "admin", "user": admin["users"][0]["user"]})
    kc.write_text(yaml.safe_dump(doc))
    runner = CliRunner()
    good = runner.invoke(app, ["doctor", "--kubeconfig", str(kc), "--context", "good", "--json"])
    assert good.exit_code in (0, 1), good.output
    assert "findings" in json.loads(good.stdout)
    bad = runner.invoke(app, ["doctor", "--kubeconfig", str(kc)])
    # (The exit code of an unreadable cluster is doctor's business; the reason is ours.)
    assert bad.exit_code != 0
    assert "cannot read the cluster: GET /apis: 401 Unauthorized" in bad.output
    unknown = runner.invoke(app, ["doctor", "--kubeconfig", str(kc), "--context", "prod"])
    assert unknown.exit_code == 2
    assert "no context named 'prod' (known: good, main)" in unknown.output


# -- tls-server-name and proxy-url ---------------------------------------------------------


def token_cluster(cp: ControlPlane, tmp_path: Path, **cluster: Any) -> Path:
    return kubeconfig(tmp_path / "kc", cluster_of(cp, **cluster), {"token": TOKEN})


def test_tls_server_name(cp: ControlPlane, tmp_path: Path) -> None:
    assert cp.url.startswith("https://127.0.0.1:")
    kc = token_cluster(cp, tmp_path, **{"tls-server-name": "localhost"})
    with KubeClient.from_kubeconfig(kc) as client:
        assert node_names(client) == ["node-a", "node-b"]
    # 127.0.0.1 is in the certificate too: failing with another name shows that the
    # name checked is tls-server-name, not the URL's host.
    wrong = token_cluster(cp, tmp_path, **{"tls-server-name": "wrong.example"})
    with KubeClient.from_kubeconfig(wrong, max_retries=0) as client, pytest.raises(ApiError) as err:
        client.list(NODES)
    assert err.value.status == 0
    assert "certificate is not valid for 'wrong.example'" in str(err.value)


class ConnectProxy(socketserver.ThreadingTCPServer):
    """An HTTP CONNECT proxy on 127.0.0.1 that records every tunnel's target."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.targets: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Tunnel(socketserver.BaseRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        with self.server.lock:
            self.server.targets.append(target)
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._pipe(self.request, upstream)

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while True:
            ready, _, _ = select.select(list(peers), [], [], 30)
            if not ready:
                return
            for sock in ready:
                try:
                    data = sock.recv(65536)
                    if data:
                        peers[sock].sendall(data)
                except OSError:  # one end reset the tunnel (a refused TLS handshake)
                    data = b""
                if not data:
                    return


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    server = ConnectProxy()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_proxy_url(cp: ControlPlane, tmp_path: Path, proxy: ConnectProxy) -> None:
    kc = token_cluster(cp, tmp_path, **{"proxy-url": proxy.url, "tls-server-name": "localhost"})
    with KubeClient.from_kubeconfig(kc) as client:
        assert node_names(client) == ["node-a", "node-b"]
        assert node_names(client) == ["node-a", "node-b"]
    host_port = cp.url.removeprefix("https://")
    assert proxy.targets and set(proxy.targets) == {host_port}
    # tls-server-name still applies inside the tunnel.
    wrong = token_cluster(cp, tmp_path, **{"proxy-url": proxy.url, "tls-server-name": "nope.test"})
    before = len(proxy.targets)
    with KubeClient.from_kubeconfig(wrong, max_retries=0) as client, pytest.raises(ApiError) as err:
        client.list(NODES)
    assert "certificate is not valid for 'nope.test'" in str(err.value)
    assert len(proxy.targets) == before + 1
