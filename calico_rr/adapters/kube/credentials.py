"""Where the Kubernetes client's bearer token comes from: fixed, a file re-read when
it changes, or an ``exec`` credential plugin run the way kubectl runs it.

The client asks its :class:`TokenSource` for a token before every request and tells
it when the server answered 401 with that token (:meth:`TokenSource.rejected`);
a source that can get a fresh credential says so and the client retries once.

Exec plugins (``users[].user.exec``, client.authentication.k8s.io/v1 and v1beta1)
are what EKS (``aws eks get-token``), GKE (``gke-gcloud-auth-plugin``), AKS
(``kubelogin``) and OIDC helpers use.  The plugin gets ``KUBERNETES_EXEC_INFO`` (an
ExecCredential with ``spec.interactive`` false, plus ``spec.cluster`` when
``provideClusterInfo``) and prints an ExecCredential; its token is cached until its
``expirationTimestamp`` (forever without one) and fetched again after a 401.
calico-rr never runs a plugin interactively: stdin is closed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from calico_rr.adapters.kube.errors import KubeConfigError

log = logging.getLogger(__name__)

EXEC_API_VERSIONS = (
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
)
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
#: How long a plugin may run: a cloud CLI fetching a token takes seconds, a hung one
#: must not hang every request behind it.
PLUGIN_TIMEOUT = 60.0


class CredentialError(KubeConfigError):
    """A credential plugin failed: not found, failed, timed out or printed nonsense."""


class TokenSource(Protocol):
    """What the client asks for the bearer token (thread-safe)."""

    def get(self) -> str | None:
        """The token for the next request (None: send none)."""
        ...

    def rejected(self, token: str | None) -> bool:
        """The server answered 401 to ``token``: True if a retry may get a new one."""
        ...


class BearerToken:
    """A bearer token: fixed, or read from a file and re-read when the file changes."""

    def __init__(self, token: str | None, token_file: str | None) -> None:
        self._static = token
        self._file = token_file
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._cached: str | None = None
        if token_file is not None:
            self.get()  # fail early on an unreadable file only if there's no fallback
            if self._cached is None and token is None:
                raise KubeConfigError("cannot read the token file", obj=token_file)

    def get(self) -> str | None:
        if self._file is None:
            return self._static
        with self._lock:
            try:
                st = os.stat(self._file)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stamp != self._stamp:
                    text = Path(self._file).read_text().strip()
                    self._stamp = stamp
                    self._cached = text or self._cached
            except OSError as exc:
                # A projected token is swapped atomically; a transient miss keeps
                # the last good token.
                log.warning("cannot read token file %s: %s", self._file, exc)
            return self._cached if self._cached is not None else self._static

    def rejected(self, token: str | None) -> bool:
        # A changed file is picked up by get() anyway; nothing new to fetch.
        return False


# -- exec plugins: the pure parts -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecSpec:
    """A user's ``exec`` section, checked; ``command`` already resolved against the
    kubeconfig that named it when it holds a slash (as kubectl does)."""

    command: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    api_version: str
    install_hint: str = ""
    interactive_mode: str = "IfAvailable"
    cluster: Mapping[str, Any] | None = None  # spec.cluster, when provideClusterInfo


@dataclass(frozen=True, slots=True)
class ExecCredential:
    """What a plugin printed: a token and/or a client certificate, and when it
    expires (Unix seconds; None = never)."""

    token: str | None
    cert_pem: str | None = None
    key_pem: str | None = None
    expires: float | None = None


def parse_exec_spec(
    raw: Any, *, base: Path, where: str, cluster: Mapping[str, Any] | None
) -> ExecSpec:
    """``users[].user.exec`` -> :class:`ExecSpec`; KubeConfigError on a bad one.

    ``base`` is the directory of the file that defined it; ``cluster`` is the
    ``spec.cluster`` to send when the plugin asks for it (provideClusterInfo)."""

    def bad(message: str) -> KubeConfigError:
        return KubeConfigError(message, obj=where, field="exec")

    if not isinstance(raw, dict):
        raise bad("must be a mapping")
    command = raw.get("command")
    if not isinstance(command, str) or not command:
        raise bad("command is required")
    api_version = raw.get("apiVersion")
    if api_version not in EXEC_API_VERSIONS:
        raise bad(f"apiVersion must be one of {', '.join(EXEC_API_VERSIONS)}, got {api_version!r}")
    mode = raw.get("interactiveMode")
    if mode is None and api_version.endswith("/v1"):
        raise bad("interactiveMode is required by client.authentication.k8s.io/v1")
    mode = mode or "IfAvailable"
    if mode not in INTERACTIVE_MODES:
        raise bad(f"interactiveMode must be one of {', '.join(INTERACTIVE_MODES)}, got {mode!r}")
    args = raw.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise bad("args must be a list of strings")
    env: list[tuple[str, str]] = []
    for item in raw.get("env") or []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise bad("env entries need a name and a value")
        env.append((item["name"], str(item.get("value") or "")))
    if "/" in command and not Path(command).expanduser().is_absolute():
        command = str(base / command)
    return ExecSpec(
        command=command,
        args=tuple(args),
        env=tuple(env),
        api_version=api_version,
        install_hint=str(raw.get("installHint") or ""),
        interactive_mode=mode,
        cluster=cluster if raw.get("provideClusterInfo") else None,
    )


def exec_info(spec: ExecSpec) -> str:
    """``KUBERNETES_EXEC_INFO`` for ``spec``: never interactive (no terminal is ours
    to lend: calico-rr also runs as a daemon)."""
    body: dict[str, Any] = {"interactive": False}
    if spec.cluster is not None:
        body["cluster"] = dict(spec.cluster)
    return json.dumps({"apiVersion": spec.api_version, "kind": "ExecCredential", "spec": body})


def parse_exec_credential(text: str, api_version: str) -> ExecCredential:
    """A plugin's stdout -> :class:`ExecCredential`; ValueError says what is wrong."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError("did not print JSON") from None
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise ValueError("did not print an ExecCredential")
    if doc.get("apiVersion") != api_version:
        raise ValueError(f"printed apiVersion {doc.get('apiVersion')!r}, expected {api_version!r}")
    status = doc.get("status")
    if not isinstance(status, dict):
        raise ValueError("printed no status")
    token = status.get("token") or None
    cert = status.get("clientCertificateData") or None
    key = status.get("clientKeyData") or None
    if not all(v is None or isinstance(v, str) for v in (token, cert, key)):
        raise ValueError("token, clientCertificateData and clientKeyData must be strings")
    if (cert is None) != (key is None):
        raise ValueError("printed clientCertificateData without clientKeyData or the reverse")
    if token is None and cert is None:
        raise ValueError("printed neither a token nor a client certificate")
    expires: float | None = None
    stamp = status.get("expirationTimestamp")
    if stamp:
        try:
            parsed = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"expirationTimestamp {stamp!r} is not RFC 3339") from None
        if parsed.tzinfo is None:
            raise ValueError(f"expirationTimestamp {stamp!r} has no time zone")
        expires = parsed.timestamp()
    return ExecCredential(token=token, cert_pem=cert, key_pem=key, expires=expires)


# -- exec plugins: running them ---------------------------------------------------------


def run_plugin(spec: ExecSpec, timeout: float = PLUGIN_TIMEOUT) -> str:
    """Run the plugin once; its stdout, or CredentialError in one line."""
    name = Path(spec.command).name
    if spec.interactive_mode == "Always":
        raise CredentialError(
            f"exec plugin {name!r} needs a terminal (interactiveMode Always); calico-rr runs "
            "plugins non-interactively: log in first (so it has a cached credential) or "
            "use IfAvailable"
        )
    env = dict(os.environ)
    env.update(spec.env)
    env["KUBERNETES_EXEC_INFO"] = exec_info(spec)
    try:
        done = subprocess.run(
            [spec.command, *spec.args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        hint = f": {' '.join(spec.install_hint.split())}" if spec.install_hint else ""
        raise CredentialError(f"exec plugin {spec.command!r} not found{hint}") from None
    except subprocess.TimeoutExpired:
        raise CredentialError(f"exec plugin {name!r} did not finish in {timeout:g}s") from None
    except OSError as exc:
        raise CredentialError(f"cannot run exec plugin {spec.command!r}: {exc}") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr or "").splitlines() if ln.strip()]
        said = f": {lines[-1]}" if lines else ""
        raise CredentialError(f"exec plugin {name!r} failed (exit {done.returncode}){said}")
    return done.stdout


class ExecCredentials:
    """A :class:`TokenSource` backed by an exec plugin (thread-safe: one plugin run at
    a time, the others wait for its token).

    ``run`` runs the plugin and returns its stdout; ``clock`` is wall-clock seconds
    (expirationTimestamp is wall time); ``on_cert(cert_pem, key_pem)`` receives a
    client certificate the plugin printed, before any request uses it.
    """

    def __init__(
        self,
        spec: ExecSpec,
        *,
        run: Callable[[ExecSpec], str] = run_plugin,
        clock: Callable[[], float] = time.time,
        on_cert: Callable[[str, str], None] | None = None,
    ) -> None:
        self.spec = spec
        self._run = run
        self._clock = clock
        self._on_cert = on_cert
        self._lock = threading.Lock()
        self._current: ExecCredential | None = None

    def get(self) -> str | None:
        with self._lock:
            cred = self._current
            if cred is None or (cred.expires is not None and self._clock() >= cred.expires):
                cred = self._fetch()
            return cred.token

    def rejected(self, token: str | None) -> bool:
        with self._lock:
            # Another thread may have fetched a new one already: keep that one.
            if self._current is not None and self._current.token == token:
                self._current = None
        return True

    def _fetch(self) -> ExecCredential:
        name = Path(self.spec.command).name
        out = self._run(self.spec)
        try:
            cred = parse_exec_credential(out, self.spec.api_version)
        except ValueError as exc:
            raise CredentialError(f"exec plugin {name!r} {exc}") from None
        if cred.cert_pem is not None and cred.key_pem is not None and self._on_cert is not None:
            self._on_cert(cred.cert_pem, cred.key_pem)
        self._current = cred
        log.debug("exec plugin %s: new credential, expires %s", name, cred.expires)
        return cred
