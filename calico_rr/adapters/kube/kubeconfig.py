"""Where the Kubernetes client connects and with which credentials: kubeconfig
files (read and merged the way kubectl reads them), or the pod's own service account.

* **Several files** (``KUBECONFIG=a:b``) merge as kubectl merges them: for each
  named cluster, user and context, and for ``current-context``, the first file
  that sets it wins (whole entries, not fields); missing files are skipped.  A
  relative path (certificate-authority, client-certificate/-key, tokenFile, an exec
  command holding a slash) is relative to the file that defined its entry.
* **Credentials**: client certificates, ``token``/``tokenFile`` and ``exec``
  plugins (:mod:`~calico_rr.adapters.kube.credentials`).  ``auth-provider`` and
  basic auth (``username``/``password``) are refused with a clear message.
* **Cluster**: certificate-authority(-data), insecure-skip-tls-verify,
  tls-server-name (:mod:`~calico_rr.adapters.kube.tls`) and proxy-url (http or
  https; socks5 is refused).
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico_rr.adapters.kube.credentials import (
    CredentialError,
    ExecCredentials,
    TokenSource,
    parse_exec_spec,
)
from calico_rr.adapters.kube.errors import KubeConfigError
from calico_rr.adapters.kube.tls import load_client_cert, ssl_context, verifying_context
from calico_rr.errors import InputError

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_SECTIONS = (("clusters", "cluster"), ("users", "user"), ("contexts", "context"))
_EXEC_EXTENSION = "client.authentication.k8s.io/exec"


@dataclass(frozen=True, slots=True)
class ClusterAccess:
    """An API server and how to reach and authenticate to it."""

    server: str
    verify: ssl.SSLContext
    token: str | None = None
    token_file: str | None = None
    proxy: str | None = None
    credentials: TokenSource | None = None  # an exec plugin (wins over token*)


@dataclass(frozen=True, slots=True)
class Named:
    """One cluster, user or context entry and the file that defined it."""

    value: Mapping[str, Any]
    origin: Path

    def path(self, value: Any) -> str:
        """A file path of this entry: relative ones are relative to its file."""
        p = Path(str(value)).expanduser()
        return str(p if p.is_absolute() else self.origin.parent / p)


@dataclass(frozen=True, slots=True)
class KubeConfig:
    """Kubeconfig files merged (:func:`merge_configs`)."""

    clusters: Mapping[str, Named]
    users: Mapping[str, Named]
    contexts: Mapping[str, Named]
    current_context: str | None
    files: tuple[str, ...]

    @property
    def where(self) -> str:
        return os.pathsep.join(self.files) or "kubeconfig"


def merge_configs(configs: Sequence[tuple[Path, Mapping[str, Any]]]) -> KubeConfig:
    """kubectl's merge of decoded kubeconfig files, in order: the first file to
    define a cluster, user or context name, or a current-context, wins."""
    merged: dict[str, dict[str, Named]] = {section: {} for section, _ in _SECTIONS}
    current: str | None = None
    for path, config in configs:
        for section, inner in _SECTIONS:
            entries = config.get(section) or []
            if not isinstance(entries, list):
                raise KubeConfigError(f"{section} must be a list", obj=str(path))
            seen: set[str] = set()
            for entry in entries:
                name = entry.get("name") if isinstance(entry, dict) else None
                if not isinstance(name, str) or not name:
                    raise KubeConfigError(f"every entry of {section} needs a name", obj=str(path))
                if name in seen:
                    raise KubeConfigError(f"{inner} {name!r} is defined twice", obj=str(path))
                seen.add(name)
                value = entry.get(inner) or {}
                if not isinstance(value, dict):
                    raise KubeConfigError(f"{inner} {name!r} is not a mapping", obj=str(path))
                merged[section].setdefault(name, Named(value, path))
        if current is None and config.get("current-context"):
            current = str(config["current-context"])
    return KubeConfig(
        clusters=merged["clusters"],
        users=merged["users"],
        contexts=merged["contexts"],
        current_context=current,
        files=tuple(str(p) for p, _ in configs),
    )


def read_kubeconfigs(paths: Sequence[str | os.PathLike[str]], *, required: bool) -> KubeConfig:
    """Read and merge ``paths``; a missing file is an error only when ``required``
    (an explicit --kubeconfig), else skipped (a KUBECONFIG entry)."""
    from calico_rr.adapters.nodes_io import read_documents

    configs: list[tuple[Path, Mapping[str, Any]]] = []
    seen: set[Path] = set()
    for raw in paths:
        file = Path(raw).expanduser()
        if file in seen or (not required and not file.exists()):
            continue
        seen.add(file)
        try:
            # The input limits of every other file (size, nesting, aliases) apply.
            docs = read_documents(str(file))
        except InputError as exc:
            raise KubeConfigError(f"cannot read kubeconfig: {exc.detail}", obj=str(file)) from None
        config = docs[0] if len(docs) == 1 else {} if not docs else None
        if not isinstance(config, dict):
            raise KubeConfigError("not a kubeconfig (expected a mapping)", obj=str(file))
        configs.append((file, config))
    return merge_configs(configs)


def _lookup(table: Mapping[str, Named], kind: str, name: str, config: KubeConfig) -> Named:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise KubeConfigError(
            f"no {kind} named {name!r} (known: {known})", obj=config.where
        ) from None


def access_for(config: KubeConfig, context: str | None) -> ClusterAccess:
    """The cluster and credentials of ``context`` (default: current-context)."""
    ctx_name = context or config.current_context
    if not ctx_name:
        raise KubeConfigError("no context given and no current-context set", obj=config.where)
    ctx = _lookup(config.contexts, "context", ctx_name, config)
    cluster = _lookup(config.clusters, "cluster", str(ctx.value.get("cluster") or ""), config)
    user_name = ctx.value.get("user")
    user = _lookup(config.users, "user", str(user_name), config) if user_name else None
    where = str(cluster.origin)
    server = cluster.value.get("server")
    if not server:
        raise KubeConfigError("cluster has no server", obj=where, field="cluster.server")
    verify = _cluster_tls(cluster)
    u: Mapping[str, Any] = user.value if user else {}
    user_where = str(user.origin) if user else where
    for refused, why in (
        ("auth-provider", "auth-provider plugins are not supported; use an exec plugin"),
        ("username", "basic auth (username/password) is not supported"),
        ("password", "basic auth (username/password) is not supported"),
    ):
        if u.get(refused):
            raise KubeConfigError(
                f"user {user_name!r}: {why}, a token, tokenFile or client certificate",
                obj=user_where,
            )
    if user is not None:
        _user_cert(verify, user)
    credentials: TokenSource | None = None
    if u.get("exec") is not None and user is not None:
        spec = parse_exec_spec(
            u["exec"],
            base=user.origin.parent,
            where=user_where,
            cluster=_cluster_info(cluster),
        )
        credentials = ExecCredentials(spec, on_cert=lambda c, k: _plugin_cert(verify, c, k))
    token = u.get("token")
    token_file = u.get("tokenFile")
    return ClusterAccess(
        str(server),
        verify=verify,
        token=str(token) if token else None,
        token_file=user.path(token_file) if user and token_file and not token else None,
        proxy=_proxy(cluster),
        credentials=credentials,
    )


def _cluster_tls(cluster: Named) -> ssl.SSLContext:
    c = cluster.value
    where = str(cluster.origin)
    server_name = str(c.get("tls-server-name") or "") or None
    try:
        if c.get("insecure-skip-tls-verify"):
            return ssl_context(False)
        if c.get("certificate-authority-data"):
            pem = _b64(c["certificate-authority-data"], where, "certificate-authority-data")
            return verifying_context(cadata=pem.decode(), server_name=server_name)
        if c.get("certificate-authority"):
            cafile = cluster.path(c["certificate-authority"])
            return verifying_context(cafile=cafile, server_name=server_name)
        return verifying_context(server_name=server_name)
    except (OSError, ssl.SSLError, UnicodeDecodeError) as exc:
        raise KubeConfigError(f"TLS setup failed: {exc}", obj=where) from exc


def _user_cert(ctx: ssl.SSLContext, user: Named) -> None:
    u = user.value
    where = str(user.origin)
    has_cert = u.get("client-certificate-data") or u.get("client-certificate")
    has_key = u.get("client-key-data") or u.get("client-key")
    if not has_cert and not has_key:
        return
    if not (has_cert and has_key):
        raise KubeConfigError("client certificate and key must be given together", obj=where)
    # PEM data as bytes, a file as its path
    cert, key = (
        _b64(u[f"{field}-data"], where, f"{field}-data")
        if u.get(f"{field}-data")
        else user.path(u[field])
        for field in ("client-certificate", "client-key")
    )
    try:
        load_client_cert(ctx, cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise KubeConfigError(f"TLS setup failed: {exc}", obj=where) from exc


def _plugin_cert(ctx: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    try:
        load_client_cert(ctx, cert_pem.encode(), key_pem.encode())
    except (OSError, ssl.SSLError) as exc:
        raise CredentialError(f"exec plugin printed an unusable certificate: {exc}") from None


def _proxy(cluster: Named) -> str | None:
    url = str(cluster.value.get("proxy-url") or "") or None
    if url is None:
        return None
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme.startswith("socks"):
        raise KubeConfigError(
            "socks proxies are not supported; use an http:// or https:// proxy",
            obj=str(cluster.origin),
            field="proxy-url",
        )
    if scheme not in ("http", "https"):
        raise KubeConfigError(
            f"must be an http:// or https:// URL, got {url!r}",
            obj=str(cluster.origin),
            field="proxy-url",
        )
    return url


def _cluster_info(cluster: Named) -> dict[str, Any]:
    """``spec.cluster`` of KUBERNETES_EXEC_INFO (provideClusterInfo): the fields
    kubectl sends, the CA always as base64 data."""
    c = cluster.value
    info: dict[str, Any] = {"server": str(c.get("server") or "")}
    for field in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url"):
        if c.get(field):
            info[field] = c[field]
    if c.get("certificate-authority-data"):
        info["certificate-authority-data"] = str(c["certificate-authority-data"])
    elif c.get("certificate-authority"):
        try:
            ca = Path(cluster.path(c["certificate-authority"])).read_bytes()
        except OSError:
            ca = b""  # the TLS setup reports the unreadable file
        info["certificate-authority-data"] = base64.b64encode(ca).decode()
    for ext in c.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == _EXEC_EXTENSION:
            info["config"] = ext.get("extension")
    return info


def kubeconfig_access(path: str | os.PathLike[str], context: str | None) -> ClusterAccess:
    """The cluster of ``context`` (default: current-context) of one kubeconfig file."""
    return access_for(read_kubeconfigs([path], required=True), context)


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
    """Explicit kubeconfig, else ``$KUBECONFIG`` (every file, merged), else
    in-cluster when ``KUBERNETES_SERVICE_HOST`` is set, else ``~/.kube/config``."""
    if kubeconfig:
        return kubeconfig_access(kubeconfig, context)
    env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if env:
        merged = read_kubeconfigs(env, required=False)
        if merged.files:
            return access_for(merged, context)
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise KubeConfigError("none of its files exists", obj="KUBECONFIG")
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        if context:
            raise KubeConfigError(f"--context {context!r} needs a kubeconfig; none was found")
        return in_cluster_access(SERVICE_ACCOUNT_DIR)
    default = Path("~/.kube/config").expanduser()
    if default.is_file():
        return kubeconfig_access(default, context)
    raise KubeConfigError(
        "no Kubernetes configuration: pass --kubeconfig, set KUBECONFIG, run in a pod "
        f"or create {default}"
    )


def _b64(value: Any, file: str, field: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=False)
    except ValueError as exc:
        raise KubeConfigError(f"not valid base64: {exc}", obj=file, field=field) from exc
