"""Where the Kubernetes client connects and with which credentials: a kubeconfig
file, or the pod's own service account.

* **TLS is built here, not by httpx.**  ``verify``/``cert`` are turned into one
  :class:`ssl.SSLContext` (httpx 0.28 deprecates string paths).  Kubeconfig
  ``*-data`` certificates are written to a private temporary directory only for the
  ``load_cert_chain`` call and removed right after it: nothing stays on disk.
* **Tokens** are fixed or read from a file that is re-read when it changes (a
  projected service-account token is rotated in place).
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico_rr.adapters.kube.errors import KubeConfigError
from calico_rr.errors import InputError

__all__ = [
    "SERVICE_ACCOUNT_DIR",
    "BearerToken",
    "ClusterAccess",
    "find_access",
    "in_cluster_access",
    "kubeconfig_access",
    "ssl_context",
]

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True, slots=True)
class ClusterAccess:
    """An API server and how to reach and authenticate to it."""

    server: str
    verify: ssl.SSLContext
    token: str | None = None
    token_file: str | None = None
    proxy: str | None = None


def ssl_context(
    verify: ssl.SSLContext | str | bool, cert: tuple[str, str] | None
) -> ssl.SSLContext:
    """One context for ``verify`` (a context, a CA bundle path or a bool) and an
    optional ``(cert_file, key_file)`` client certificate."""
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif verify is True:
        ctx = ssl.create_default_context()
    else:
        ctx = ssl.create_default_context(cafile=str(verify))
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


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


def kubeconfig_access(path: str | os.PathLike[str], context: str | None) -> ClusterAccess:
    """The cluster of ``context`` (default: current-context) of a kubeconfig file.

    Supports certificate-authority(-data), client-certificate/client-key (file or
    -data), token, tokenFile, insecure-skip-tls-verify and proxy-url.  Relative file
    paths are relative to the kubeconfig's directory.
    """
    from calico_rr.adapters.nodes_io import read_documents

    file = Path(path).expanduser()
    name = str(file)
    try:
        # The input limits of every other file (size, nesting, aliases) apply.
        docs = read_documents(name)
    except InputError as exc:
        raise KubeConfigError(f"cannot read kubeconfig: {exc.detail}", obj=name) from None
    config = docs[0] if len(docs) == 1 else None
    if not isinstance(config, dict):
        raise KubeConfigError("not a kubeconfig (expected a mapping)", obj=name)
    ctx_name = context or config.get("current-context")
    if not ctx_name:
        raise KubeConfigError("no context given and no current-context set", obj=name)
    ctx = _named(config, "contexts", str(ctx_name), "context", name)
    cluster = _named(config, "clusters", str(ctx.get("cluster", "")), "cluster", name)
    user_name = ctx.get("user")
    user = _named(config, "users", str(user_name), "user", name) if user_name else {}
    base = file.parent

    def rel(value: Any) -> str:
        p = Path(str(value)).expanduser()
        return str(p if p.is_absolute() else base / p)

    server = cluster.get("server")
    if not server:
        raise KubeConfigError("cluster has no server", obj=name, field="cluster.server")
    for unsupported in ("exec", "auth-provider"):
        if unsupported in user:
            raise KubeConfigError(
                f"user {user_name!r}: {unsupported} credential plugins are not supported; "
                "use a token, tokenFile or client certificate",
                obj=name,
            )
    try:
        if cluster.get("insecure-skip-tls-verify"):
            ssl_ctx = ssl_context(False, None)
        elif cluster.get("certificate-authority-data"):
            pem = _b64(cluster["certificate-authority-data"], name, "certificate-authority-data")
            ssl_ctx = ssl.create_default_context(cadata=pem.decode())
        elif cluster.get("certificate-authority"):
            ssl_ctx = ssl.create_default_context(cafile=rel(cluster["certificate-authority"]))
        else:
            ssl_ctx = ssl.create_default_context()
        _load_client_cert(ssl_ctx, user, rel, name)
    except (OSError, ssl.SSLError) as exc:
        raise KubeConfigError(f"TLS setup failed: {exc}", obj=name) from exc
    token = user.get("token")
    token_file = user.get("tokenFile")
    return ClusterAccess(
        str(server),
        verify=ssl_ctx,
        token=str(token) if token else None,
        token_file=rel(token_file) if token_file and not token else None,
        proxy=cluster.get("proxy-url") or None,
    )


def in_cluster_access(service_account_dir: str | os.PathLike[str]) -> ClusterAccess:
    """The API server of the pod's own cluster, with the service account's CA and
    (projected, re-read when it changes) token."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeConfigError("KUBERNETES_SERVICE_HOST is not set (not running in a pod?)")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    sa = Path(service_account_dir)
    try:
        ssl_ctx = ssl.create_default_context(cafile=str(sa / "ca.crt"))
    except (OSError, ssl.SSLError) as exc:
        raise KubeConfigError(f"cannot load the service-account CA: {exc}", obj=str(sa)) from exc
    return ClusterAccess(f"https://{host}:{port}", verify=ssl_ctx, token_file=str(sa / "token"))


def find_access(kubeconfig: str | os.PathLike[str] | None, context: str | None) -> ClusterAccess:
    """Explicit kubeconfig, else ``$KUBECONFIG`` (first entry), else in-cluster when
    ``KUBERNETES_SERVICE_HOST`` is set, else ``~/.kube/config``."""
    if kubeconfig:
        return kubeconfig_access(kubeconfig, context)
    env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if env:
        return kubeconfig_access(env[0], context)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster_access(SERVICE_ACCOUNT_DIR)
    default = Path("~/.kube/config").expanduser()
    if default.is_file():
        return kubeconfig_access(default, context)
    raise KubeConfigError(
        "no Kubernetes configuration: pass --kubeconfig, set KUBECONFIG, run in a pod "
        f"or create {default}"
    )


def _named(
    config: dict[str, Any], section: str, name: str, inner: str, file: str
) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(inner) or {}
            if not isinstance(value, dict):
                raise KubeConfigError(f"{section[:-1]} {name!r} is not a mapping", obj=file)
            return value
    raise KubeConfigError(f"no {section[:-1]} named {name!r}", obj=file, field=section)


def _b64(value: Any, file: str, field: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=False)
    except ValueError as exc:
        raise KubeConfigError(f"not valid base64: {exc}", obj=file, field=field) from exc


def _load_client_cert(
    ctx: ssl.SSLContext, user: dict[str, Any], rel: Callable[[Any], str], file: str
) -> None:
    """Load the user's client certificate into ``ctx``; ``-data`` variants go through
    a private temporary directory that is removed right after loading."""
    has_cert = user.get("client-certificate-data") or user.get("client-certificate")
    has_key = user.get("client-key-data") or user.get("client-key")
    if not has_cert and not has_key:
        return
    if not (has_cert and has_key):
        raise KubeConfigError("client certificate and key must be given together", obj=file)
    with tempfile.TemporaryDirectory(prefix="calico-rr-") as tmp:  # mode 0700
        paths: list[str] = []
        for field in ("client-certificate", "client-key"):
            if user.get(f"{field}-data"):
                target = Path(tmp) / field
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_b64(user[f"{field}-data"], file, f"{field}-data"))
                paths.append(str(target))
            else:
                paths.append(rel(user[field]))
        ctx.load_cert_chain(paths[0], paths[1])
