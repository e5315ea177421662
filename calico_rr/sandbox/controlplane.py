"""A real, throwaway Kubernetes control plane (etcd + kube-apiserver) for tests.

``ControlPlane`` starts etcd and kube-apiserver on 127.0.0.1 with free ports and
fresh certificates, waits until the API server is ready and stops everything on
exit.  The binaries come from ``scripts/controlplane-build.sh``.  Only the
standard library and PyYAML are used; certificates are made with the ``openssl``
command.  See docs/CONTROLPLANE.md.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from calico_rr.sandbox.pki import issue_cert, make_ca, openssl
from calico_rr.sandbox.process import (
    ControlPlaneError,
    LocalProcess,
    LocalService,
    etcd_args,
    etcd_healthy,
    free_port,
)

ADMIN_USER = "admin"
OPERATOR_USER = "calico-rr"

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


# Metadata for every request, logged once the response started (watches) and once
# it is complete; "RequestReceived" is left out (it would double every entry).
_AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


def audit_request(line: str) -> dict[str, Any] | None:
    """One audit-log line as a request event, or None when the line is not one.

    Each request is logged at several stages; a request counts at
    ``ResponseComplete``, and a watch (which completes only when it ends) at
    ``ResponseStarted``.  Callers de-duplicate by ``auditID``."""
    try:
        event = json.loads(line)
    except ValueError:
        return None  # a partly written last line
    if not isinstance(event, dict):
        return None
    stage = event.get("stage")
    if stage == "ResponseComplete" or (stage == "ResponseStarted" and event.get("verb") == "watch"):
        return event
    return None


@dataclass(frozen=True, slots=True)
class Credentials:
    """A client identity: certificate, key and the kubeconfig that uses them."""

    user: str
    cert_file: Path
    key_file: Path
    kubeconfig: Path


class ControlPlane(LocalService):
    """etcd + kube-apiserver on 127.0.0.1, for the duration of a ``with`` block.

    ``scripts/controlplane-build.sh`` provides ``etcd`` and ``kube-apiserver``
    (building on first use).  ``audit=True`` turns on the API server's audit log
    (Metadata level, every request); read it with :meth:`audit_events`.
    """

    label = "control plane"
    startup_timeout = 120.0
    stop_timeout = 15.0

    def __init__(self, *, extra_apiserver_args: tuple[str, ...] = (), audit: bool = False) -> None:
        super().__init__()
        self.extra_apiserver_args = extra_apiserver_args
        self.audit = audit
        self._processes: list[LocalProcess] = []
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._users: dict[str, Credentials] = {}
        self.etcd_url = ""
        self.url = ""

    # -- public surface --------------------------------------------------------

    @property
    def admin_kubeconfig(self) -> Path:
        return self.credentials(ADMIN_USER).kubeconfig

    @property
    def operator_kubeconfig(self) -> Path:
        return self.credentials(OPERATOR_USER).kubeconfig

    def credentials(self, user: str) -> Credentials:
        try:
            return self._users[user]
        except KeyError:
            raise ControlPlaneError(f"no credentials for user {user!r}") from None

    def ssl_context(self, user: str = ADMIN_USER) -> ssl.SSLContext:
        """A client TLS context trusting our CA and presenting ``user``'s cert."""
        ctx = self._contexts.get(user)
        if ctx is None:
            creds = self.credentials(user)
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            ctx.load_cert_chain(str(creds.cert_file), str(creds.key_file))
            self._contexts[user] = ctx
        return ctx

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines); only written with ``audit=True``."""
        return self.directory / "audit.log"

    def audit_events(self, user: str | None = None) -> list[dict[str, Any]]:
        """The audit events so far, one per request (:func:`audit_request`,
        de-duplicated by ``auditID``), optionally only ``user``'s.  The log is
        written in blocking mode: a request's entry exists before its response."""
        if not self.audit:
            raise ControlPlaneError("auditing is off: start ControlPlane(audit=True)")
        try:
            text = self.audit_log.read_text()
        except FileNotFoundError:
            return []
        events: dict[str, dict[str, Any]] = {}
        for line in text.splitlines():
            event = audit_request(line)
            if event is None:
                continue
            if user is not None and (event.get("user") or {}).get("username") != user:
                continue
            events.setdefault(str(event.get("auditID")), event)
        return list(events.values())

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        binaries = self._prepare("calico-rr-cp-")
        self._make_pki()
        self._start_etcd(binaries / "etcd")
        self._start_apiserver(binaries / "kube-apiserver")
        for user in (ADMIN_USER, OPERATOR_USER):
            self._write_kubeconfig(self._users[user])

    def stop(self) -> None:
        """Stop every process, last started first (the API server before etcd: it
        shuts down fast only while etcd still answers), then remove the temp dir."""
        for proc in reversed(self._processes):
            proc.stop(self.stop_timeout)
        self._processes.clear()
        self._contexts.clear()
        self._remove_directory()

    # -- pieces ----------------------------------------------------------------

    def _make_pki(self) -> None:
        pki = self.pki
        make_ca(pki)
        issue_cert(pki, "apiserver", "/CN=kube-apiserver", "server_ext", 2)
        issue_cert(pki, "admin", f"/O=system:masters/CN={ADMIN_USER}", "client_ext", 3)
        issue_cert(pki, OPERATOR_USER, f"/CN={OPERATOR_USER}", "client_ext", 4)
        openssl(
            pki,
            "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", "sa.key",
        )  # fmt: skip
        openssl(pki, "pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        for user, stem in ((ADMIN_USER, "admin"), (OPERATOR_USER, OPERATOR_USER)):
            self._users[user] = Credentials(
                user=user,
                cert_file=pki / f"{stem}.crt",
                key_file=pki / f"{stem}.key",
                kubeconfig=self.directory / f"{stem}.kubeconfig",
            )

    def _run(self, name: str, args: list[str], what: str, ready: Callable[[], bool]) -> None:
        """Start ``name`` (logging to ``name.log``) and wait until ``ready()``."""
        proc = LocalProcess(name, args, cwd=self.directory, log_file=self.directory / f"{name}.log")
        self._processes.append(proc)
        proc.wait_ready(what, ready, self.startup_timeout)

    def _start_etcd(self, etcd: Path) -> None:
        client, peer = free_port(), free_port()
        while peer == client:
            peer = free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self._run(
            "etcd",
            etcd_args(etcd, "default", self.directory / "etcd-data", self.etcd_url, peer_url),
            "healthy",
            lambda: etcd_healthy(self.etcd_url),
        )

    def _start_apiserver(self, apiserver: Path) -> None:
        pki = self.pki
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        audit_args: list[str] = []
        if self.audit:
            policy = self.directory / "audit-policy.yaml"
            policy.write_text(yaml.safe_dump(_AUDIT_POLICY, sort_keys=False))
            audit_args = [
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",
                "--audit-log-maxbackup=0",
                "--audit-log-maxage=0",
            ]
        self._run(
            "kube-apiserver",
            [
                str(apiserver),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.directory / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--etcd-servers={self.etcd_url}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--v=1",
                *audit_args,
                *self.extra_apiserver_args,
            ],
            "ready (/readyz)",
            lambda: request(self, "GET", "/readyz")[0] == 200,
        )

    def _write_kubeconfig(self, creds: Credentials) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "calico-rr-test",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [
                {
                    "name": creds.user,
                    "user": {
                        "client-certificate": str(creds.cert_file),
                        "client-key": str(creds.key_file),
                    },
                }
            ],
            "contexts": [
                {"name": "default", "context": {"cluster": "calico-rr-test", "user": creds.user}}
            ],
            "current-context": "default",
        }
        creds.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))


def request(
    cp: ControlPlane,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    user: str = ADMIN_USER,
    params: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """One HTTPS request to the API server as ``user``; returns (status, body).

    ``body`` may be bytes, a str or any JSON value (sent as JSON, which is also
    valid for ``application/apply-patch+yaml``).  The reply is decoded as JSON when
    it is JSON, else returned as text; HTTP errors are returned, not raised.
    """
    url = cp.url + path
    if params:
        url += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
    data: bytes | None
    if body is None:
        data = None
    elif isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=cp.ssl_context(user), timeout=timeout) as resp:
            status: int = resp.status
            raw: bytes = resp.read()
    except urllib.error.HTTPError as err:
        status = err.code
        raw = err.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def _crd_documents(directory: Path) -> Iterator[dict[str, Any]]:
    files = sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
    if not files:
        raise ControlPlaneError(f"no CRD files in {directory}")
    for path in files:
        with path.open() as fh:
            for doc in yaml.safe_load_all(fh):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    yield doc


def _established(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Established" and cond.get("status") == "True":
            return True
    return False


def apply_crds(cp: ControlPlane, directory: Path, *, timeout: float = 60.0) -> list[str]:
    """Create every CRD in ``directory`` and wait until each is Established.

    Returns the CRD names.  A CRD that already exists is left as it is.
    """
    names: list[str] = []
    for doc in _crd_documents(Path(directory)):
        name = str(doc["metadata"]["name"])
        status, body = request(cp, "POST", CRD_PATH, doc)
        if status not in (200, 201, 409):
            raise ControlPlaneError(f"creating CRD {name}: HTTP {status}: {body}")
        names.append(name)
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        pending = [n for n in pending if not _established(request(cp, "GET", f"{CRD_PATH}/{n}")[1])]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"CRDs not Established after {timeout:.0f}s: {pending}")
        time.sleep(0.2)
    return names
