"""etcd's own authentication (ETCD_USERNAME/ETCD_PASSWORD) against a real etcd.

One etcd member with TLS and client certificates, as everywhere in these tests, plus
etcd's user/role authentication switched on, simple tokens with a 2-second TTL (so
token expiry happens within the test), a ``root`` user and a ``rr-operator`` user
whose role grants only the prefixes docs/ETCD.md lists for calico-rr.

With authentication on and ``--client-cert-auth``, etcd refuses JSON-gateway
requests from a certificate that carries a CommonName (it would be ignored there),
so the clients here use a second client certificate without a CN; the CN one is
checked to fail with an explanation.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import EtcdAuthError
from calico_rr.adapters.etcd.values import WatchEvent, prefix_end
from calico_rr.core.formats import etcd as L
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.sandbox.etcd import EtcdServer
from calico_rr.sandbox.pki import issue_cert
from calico_rr.sandbox.process import free_port

from .test_etcd_operator import Cluster

pytestmark = pytest.mark.integration

ROOT_PASSWORD = "root-pw"
USER, PASSWORD = "rr-operator", "s3cret-pw"
ROLE = "calico-rr"

#: What the operator reads and writes (docs/ETCD.md, "etcd authentication").
GRANTS: list[tuple[str, str]] = [
    *(
        ("READWRITE", f"{L.RESOURCE_ROOT}{plural}/")
        for plural in ("nodes", "bgppeers", "bgpconfigurations", "caliconodestatuses")
    ),
    ("READWRITE", "/calico-rr/"),
    ("READ", L.FELIX_STATUS_PREFIX),
]


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _admin_call(client: EtcdClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return client._call("auth-admin", path, body, read=False)


def _enable_auth(server: EtcdServer) -> None:
    with server.client() as c:  # before auth is on, the certificate alone is enough
        _admin_call(c, "/v3/auth/user/add", {"name": "root", "password": ROOT_PASSWORD})
        _admin_call(c, "/v3/auth/user/grant", {"user": "root", "role": "root"})
        _admin_call(c, "/v3/auth/user/add", {"name": USER, "password": PASSWORD})
        _admin_call(c, "/v3/auth/role/add", {"name": ROLE})
        for perm, prefix in GRANTS:
            _admin_call(
                c,
                "/v3/auth/role/grant",
                {
                    "name": ROLE,
                    "perm": {
                        "permType": perm,
                        "key": _b64(prefix),
                        "range_end": _b64(prefix_end(prefix.encode())),
                    },
                },
            )
        _admin_call(c, "/v3/auth/user/grant", {"user": USER, "role": ROLE})
        _admin_call(c, "/v3/auth/enable", {})


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer(extra_args=("--auth-token=simple", "--auth-token-ttl=2")) as server:
        issue_cert(server.directory / "pki", "nocn", "/O=calico-rr", "client_ext", 10)
        _enable_auth(server)
        yield server


def _no_cn(server: EtcdServer) -> tuple[Path, Path]:
    pki = server.directory / "pki"
    return pki / "nocn.crt", pki / "nocn.key"


def _client(
    server: EtcdServer, user: str | None, password: str | None, *, cn: bool = False, **kw: Any
) -> EtcdClient:
    s = server.settings()
    cert, key = (s.cert_file, s.key_file) if cn else _no_cn(server)
    return EtcdClient(
        s.endpoints,
        ca_file=s.ca_cert_file,
        cert_file=cert,
        key_file=key,
        username=user,
        password=password,
        retries=0,
        **kw,
    )


def test_user_with_password_reads_writes_watches_and_leases(etcd: EtcdServer) -> None:
    ops: list[str] = []
    with _client(etcd, USER, PASSWORD, on_request=lambda op, ep, code: ops.append(op)) as c:
        key = "/calico-rr/test/a"
        rev = c.put_if(key, b"1", 0).mod_revision
        assert c.get(key) is not None and c.get(key).value == b"1"  # type: ignore[union-attr]
        with c.watch("/calico-rr/test/", rev + 1) as w:
            c.put_if(key, b"2", rev)
            event = next(e for e in w if isinstance(e, WatchEvent))
            assert event.kv.value == b"2"
        lease = c.grant(10)
        c.put("/calico-rr/test/leased", b"x", lease=lease.id)
        c.revoke(lease.id)
        assert [kv.key for kv in c.list("/calico-rr/test/").kvs] == [key]
        assert c.delete_if(key, c.get(key).mod_revision)  # type: ignore[union-attr]
    assert ops.count("authenticate") == 1, ops  # one token, reused


def test_wrong_password_is_refused_with_a_clear_error_and_writes_nothing(
    etcd: EtcdServer,
) -> None:
    with _client(etcd, USER, "not-the-password") as c:
        with pytest.raises(EtcdAuthError, match="check ETCD_USERNAME and ETCD_PASSWORD") as info:
            c.put_if("/calico-rr/test/wrong", b"1", 0)
        assert USER in str(info.value)
    with _client(etcd, USER, PASSWORD) as c:
        assert c.get("/calico-rr/test/wrong") is None


def test_no_user_means_no_access(etcd: EtcdServer) -> None:
    """Without a token etcd grants nothing."""
    with _client(etcd, None, None) as c, pytest.raises(EtcdAuthError):
        c.get("/calico-rr/test/x")


def test_certificate_with_a_common_name_is_explained(etcd: EtcdServer) -> None:
    with (
        _client(etcd, USER, PASSWORD, cn=True) as c,
        pytest.raises(EtcdAuthError, match="client certificate without a CN"),
    ):
        c.get("/calico-rr/test/x")


def test_outside_the_role_is_permission_denied(etcd: EtcdServer) -> None:
    with _client(etcd, USER, PASSWORD) as c:
        with pytest.raises(EtcdAuthError, match="lacks a permission"):
            c.put_if("/calico/resources/v3/projectcalico.org/ippools/p", b"{}", 0)
        with pytest.raises(EtcdAuthError, match="lacks a permission"):
            c.put_if(L.FELIX_STATUS_PREFIX + "x", b"{}", 0)  # read-only there
        with pytest.raises(EtcdAuthError, match="permission"):
            c.watch("/calico/", 0)
    with _client(etcd, "root", ROOT_PASSWORD) as root:
        assert root.get("/calico/resources/v3/projectcalico.org/ippools/p") is None


def test_expired_token_is_renewed_transparently(etcd: EtcdServer) -> None:
    ops: list[str] = []
    with _client(etcd, USER, PASSWORD, on_request=lambda op, ep, code: ops.append(op)) as c:
        c.put("/calico-rr/test/ttl", b"1")
        time.sleep(3.5)  # the 2 s simple-token TTL runs out while idle
        c.put("/calico-rr/test/ttl", b"2")  # a write: refused, re-authenticated, repeated
        time.sleep(3.5)
        with c.watch("/calico-rr/test/", 0):
            pass
        time.sleep(3.5)
        got = c.get("/calico-rr/test/ttl")
        assert got is not None and got.value == b"2"
    assert ops.count("authenticate") == 4, ops


def test_operator_converges_with_only_its_role(etcd: EtcdServer) -> None:
    """The whole operator as ``rr-operator``: leader election, watches, CAS writes,
    status — the role in docs/ETCD.md is enough."""
    admin = _client(etcd, "root", ROOT_PASSWORD)
    for kv in admin.list("/calico").kvs:
        admin.delete(kv.key)
    c = Cluster(etcd, admin)
    try:
        c.add(synthetic_cluster(40, zones=3))
        c.config({"waitTimeout": "1s", "debounce": "20ms"})
        op = c.operator(client=_client(etcd, USER, PASSWORD, timeout=5.0))
        c.steady(op, timeout=90.0)
        assert c.safety().ok
        assert c.rr_nodes(), "no route reflector placed"
        assert c.status()["phase"] == "Steady"
    finally:
        for o in c.ops:
            o.stop(release=False)
            o.client.close()
        admin.close()


def test_run_command_with_etcd_username_and_password(etcd: EtcdServer, tmp_path: Path) -> None:
    """`calico-rr run` with Calico's variables plus ETCD_USERNAME/ETCD_PASSWORD:
    converges as that user; a user without a password is refused before anything."""
    admin = _client(etcd, "root", ROOT_PASSWORD)
    for kv in admin.list("/calico").kvs:
        admin.delete(kv.key)
    c = Cluster(etcd, admin)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
    env.update(etcd.env())
    cert, key = _no_cn(etcd)
    env.update(ETCD_CERT_FILE=str(cert), ETCD_KEY_FILE=str(key), ETCD_USERNAME=USER)
    cmd = [sys.executable, "-m", "calico_rr.cli", "run", "--port", str(free_port())]
    half = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert half.returncode == 2, half.stderr
    assert "ETCD_USERNAME=rr-operator is set but ETCD_PASSWORD is not" in half.stderr
    env["ETCD_PASSWORD"] = PASSWORD
    c.add(synthetic_cluster(9, zones=3))
    c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"})
    stderr = tmp_path / "stderr.log"
    try:
        c.run_process(cmd, env, stderr)
        assert c.safety().ok and len(c.rr_nodes()) >= 2
        assert PASSWORD not in stderr.read_text()  # never logged
    finally:
        admin.close()
