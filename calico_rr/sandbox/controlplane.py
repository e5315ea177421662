"""A real, throwaway Kubernetes control plane (etcd + kube-apiserver) for tests.

``ControlPlane`` starts etcd and kube-apiserver on 127.0.0.1 with free ports and
fresh certificates, waits until the API server is ready and stops everything on
exit.  The binaries come from ``scripts/controlplane-build.sh`` (or a directory you
pass in).  Only the standard library and PyYAML are used; certificates are made
with the ``openssl`` command.  See docs/CONTROLPLANE.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "controlplane-build.sh"

ADMIN_USER = "admin"
OPERATOR_USER = "calico-rr"

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = calico-rr-test

[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""


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


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies (Linux
    PR_SET_PDEATHSIG), so a killed test run leaves no API server behind."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: stop() still cleans up on a normal exit


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or talked to."""


def build_binaries(script: Path = BUILD_SCRIPT, *, timeout: float = 3600.0) -> Path:
    """Run the build script and return the directory it prints on its last line.

    The script's progress (stderr) goes to this process's stderr.  Any failure
    raises ``ControlPlaneError``: callers (tests) must fail, not skip.
    """
    from calico_rr.adapters.calico_bin import run_build_script

    try:
        directory = run_build_script(script, timeout=timeout)
    except RuntimeError as exc:
        raise ControlPlaneError(str(exc)) from exc
    _check_binaries(directory)
    return directory


def _check_binaries(directory: Path) -> None:
    for name in ("etcd", "kube-apiserver"):
        path = directory / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ControlPlaneError(f"missing executable {path}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def openssl(pki: Path, *args: str) -> None:
    """Run ``openssl args`` in the directory ``pki``; ControlPlaneError on failure."""
    done = subprocess.run(["openssl", *args], cwd=pki, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def make_ca(pki: Path, extra_sections: str = "") -> None:
    """A throwaway CA in ``pki`` (``ca.crt``, ``ca.key``) plus ``openssl.cnf``, whose
    extension sections (``server_ext``, ``client_ext``, then ``extra_sections``)
    :func:`issue_cert` names."""
    (pki / "openssl.cnf").write_text(_OPENSSL_CONFIG + extra_sections)
    openssl(
        pki,
        "req", "-x509", "-new", "-nodes", "-config", "openssl.cnf",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "7", "-sha256",
        "-subj", "/CN=calico-rr-test-ca", "-extensions", "ca_ext",
    )  # fmt: skip


def issue_cert(pki: Path, name: str, subject: str, extensions: str, serial: int) -> None:
    """``name.crt`` / ``name.key`` in ``pki``, signed by :func:`make_ca`'s CA, with the
    extension section ``extensions`` of its ``openssl.cnf``."""
    openssl(
        pki,
        "req", "-new", "-nodes", "-config", "openssl.cnf",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
    )  # fmt: skip
    openssl(
        pki,
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(serial), "-days", "7", "-sha256",
        "-extfile", "openssl.cnf", "-extensions", extensions, "-out", f"{name}.crt",
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Credentials:
    """A client identity: certificate, key and the kubeconfig that uses them."""

    user: str
    cert_file: Path
    key_file: Path
    kubeconfig: Path


@dataclass(slots=True)
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_file: Path
    log: IO[bytes]

    def tail(self, lines: int = 40) -> str:
        self.log.flush()
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ControlPlane:
    """etcd + kube-apiserver on 127.0.0.1, for the duration of a ``with`` block.

    ``binaries`` is a directory holding ``etcd`` and ``kube-apiserver``; when None,
    ``scripts/controlplane-build.sh`` provides it (building on first use).
    ``audit=True`` turns on the API server's audit log (Metadata level, every
    request); read it with :meth:`audit_events`.
    """

    def __init__(
        self,
        binaries: Path | None = None,
        *,
        startup_timeout: float = 120.0,
        stop_timeout: float = 15.0,
        service_cluster_ip_range: str = "10.0.0.0/24",
        extra_apiserver_args: tuple[str, ...] = (),
        audit: bool = False,
    ) -> None:
        self._binaries_arg = binaries
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.service_cluster_ip_range = service_cluster_ip_range
        self.extra_apiserver_args = extra_apiserver_args
        self.audit = audit
        self._dir: Path | None = None
        self._processes: list[_Process] = []
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._users: dict[str, Credentials] = {}
        self.binaries: Path | None = None
        self.etcd_url = ""
        self.url = ""

    # -- public surface --------------------------------------------------------

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise ControlPlaneError("control plane is not running")
        return self._dir

    @property
    def ca_file(self) -> Path:
        return self.directory / "pki" / "ca.crt"

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
        """The audit events so far, one per request, optionally only ``user``'s.

        Each request is logged at several stages; this keeps ``ResponseComplete``
        and, for watches (which complete only when they end), ``ResponseStarted``,
        de-duplicated by ``auditID`` so that every request counts once.  The log is
        written in blocking mode: a request's entry exists before its response.
        """
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

    def logs(self, lines: int = 40) -> str:
        """The last ``lines`` lines of each process's log, for error messages."""
        return "\n".join(f"--- {p.name} ---\n{p.tail(lines)}" for p in self._processes)

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._dir is not None:
            raise ControlPlaneError("control plane already started")
        binaries = self._binaries_arg if self._binaries_arg is not None else build_binaries()
        _check_binaries(binaries)
        self.binaries = binaries
        if shutil.which("openssl") is None:
            raise ControlPlaneError("the openssl command is needed to make certificates")
        self._dir = Path(tempfile.mkdtemp(prefix="calico-rr-cp-"))
        self._make_pki()
        self._start_etcd()
        self._start_apiserver()
        for user in (ADMIN_USER, OPERATOR_USER):
            self._write_kubeconfig(self._users[user])

    def stop(self) -> None:
        """Stop every process, last started first (the API server before etcd: it
        shuts down fast only while etcd still answers), then remove the temp dir."""
        for proc in reversed(self._processes):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.terminate()
            try:
                proc.popen.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.popen.wait()
            proc.log.close()
        self._processes.clear()
        self._contexts.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- pieces ----------------------------------------------------------------

    def _openssl(self, *args: str) -> None:
        openssl(self.directory / "pki", *args)

    def _issue(self, name: str, subject: str, extensions: str, serial: int) -> None:
        issue_cert(self.directory / "pki", name, subject, extensions, serial)

    def _make_pki(self) -> None:
        pki = self.directory / "pki"
        pki.mkdir()
        make_ca(pki)
        self._issue("apiserver", "/CN=kube-apiserver", "server_ext", 2)
        self._issue("admin", f"/O=system:masters/CN={ADMIN_USER}", "client_ext", 3)
        self._issue(OPERATOR_USER, f"/CN={OPERATOR_USER}", "client_ext", 4)
        self._openssl(
            "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", "sa.key",
        )  # fmt: skip
        self._openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        for user, stem in ((ADMIN_USER, "admin"), (OPERATOR_USER, OPERATOR_USER)):
            self._users[user] = Credentials(
                user=user,
                cert_file=pki / f"{stem}.crt",
                key_file=pki / f"{stem}.key",
                kubeconfig=self.directory / f"{stem}.kubeconfig",
            )

    def _spawn(self, name: str, args: list[str]) -> _Process:
        log_file = self.directory / f"{name}.log"
        log = log_file.open("wb")
        try:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            log.close()
            raise ControlPlaneError(f"cannot start {name}: {exc}") from exc
        proc = _Process(name=name, popen=popen, log_file=log_file, log=log)
        self._processes.append(proc)
        return proc

    def _wait(self, proc: _Process, what: str, ready: Any) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while time.monotonic() < deadline:
            code = proc.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with status {code} before {what}:\n{proc.tail()}"
                )
            try:
                if ready():
                    return
            except (OSError, ssl.SSLError, urllib.error.URLError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.25)
        raise ControlPlaneError(
            f"{proc.name}: no {what} after {self.startup_timeout:.0f}s ({last})\n{proc.tail()}"
        )

    def _start_etcd(self) -> None:
        assert self.binaries is not None
        client, peer = free_port(), free_port()
        while peer == client:
            peer = free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        proc = self._spawn(
            "etcd",
            [
                str(self.binaries / "etcd"),
                "--name=default",
                f"--data-dir={self.directory / 'etcd-data'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--initial-cluster-state=new",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                body = json.loads(resp.read() or b"{}")
            return str(body.get("health")) == "true"

        self._wait(proc, "healthy etcd", healthy)

    def _start_apiserver(self) -> None:
        assert self.binaries is not None
        pki = self.directory / "pki"
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
        proc = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries / "kube-apiserver"),
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
                f"--service-cluster-ip-range={self.service_cluster_ip_range}",
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--v=1",
                *audit_args,
                *self.extra_apiserver_args,
            ],
        )

        def ready() -> bool:
            status, _ = request(self, "GET", "/readyz")
            return status == 200

        self._wait(proc, "ready kube-apiserver (/readyz)", ready)

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
