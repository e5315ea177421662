"""A thin, synchronous Kubernetes API client on top of httpx.

Design decisions
----------------
* **Plain dicts in, plain dicts out.**  The operator works on JSON objects; no
  generated models, no discovery cache.  Paths are built with :func:`api_path`.
* **One place for retries.**  Every request goes through ``KubeClient._send``, which
  retries 429/500/502/503/504 and connection errors with exponential backoff and full
  jitter (``uniform(0, min(backoff_max, backoff_base * 2**attempt))``), honouring a
  ``Retry-After`` header given in seconds (capped at ``backoff_max``).  Other 4xx
  are never retried: a 409 is the caller's business (optimistic concurrency).  A
  POST retried after a connection error may have been applied already; callers
  treat ``AlreadyExists`` as success.
* **Errors carry the Kubernetes Status.**  :class:`ApiError` has the HTTP status and
  the Status ``reason``/``message``; 404/409/410 have their own subclasses
  (:class:`NotFound`, :class:`Conflict` with :class:`AlreadyExists`, :class:`Gone`).
  Connection errors and timeouts that survive the retries become ``ApiError`` with
  status 0.
* **TLS is built here, not by httpx.**  ``verify``/``cert`` are turned into one
  :class:`ssl.SSLContext` (httpx 0.28 deprecates string paths).  Kubeconfig
  ``*-data`` certificates are written to a private temporary directory only for the
  ``load_cert_chain`` call and removed right after it: nothing stays on disk.
* **Environment proxies are ignored** (``trust_env=False``) so that the transport we
  build (or the one passed in, e.g. a fault injector) is always the one used; a
  kubeconfig ``proxy-url`` is honoured.
* **Watches can be stopped from any thread.**  :meth:`KubeClient.watch` returns a
  :class:`Watch` iterator.  ``Watch.close()`` (or ``KubeClient.close()``, which closes
  every open watch) marks it closed and shuts the underlying socket down with
  ``shutdown(SHUT_RDWR)``, which wakes a thread blocked in ``recv`` at once (closing
  the fd alone does not, on Linux).  Each watch has its own connection
  (``Connection: close``, never returned to the pool), so that shutdown cannot hit
  another request.  The consuming thread then sees the end of the stream and the
  iterator stops normally; the HTTP response is released by the consuming thread,
  so httpcore's state is only ever touched by one thread.
* **Thread-safety.**  ``httpx.Client`` and its connection pool are safe for
  concurrent use; the only other shared state (token cache, the set of open watches)
  is guarded by locks.
* **Metrics hook.**  ``on_request(verb, resource, status)`` is called once per HTTP
  request actually sent (retries count separately), with the Kubernetes verb
  (get/list/watch/create/update/patch/apply/delete), the resource plural (the
  request path for non-resource URLs such as ``/apis``) and the status (0 for a
  connection error).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import random
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from calico_rr.adapters.stream import ResponseStream
from calico_rr.errors import InputError

__all__ = [
    "APPLY_PATCH",
    "AlreadyExists",
    "ApiError",
    "Conflict",
    "Gone",
    "KubeClient",
    "KubeConfigError",
    "NotFound",
    "Watch",
    "WatchEvent",
    "api_path",
    "resource_of",
]

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES: Mapping[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# Extra read timeout on top of a watch's timeoutSeconds: the server closes the
# stream itself at timeoutSeconds, so a read that waits longer means a dead peer.
WATCH_READ_SLACK = 15.0

#: Status reasons by HTTP code, as kube-apiserver names them.
REASONS: Mapping[int, str] = {
    0: "ConnectionError",
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",  # what kube-apiserver says for a too-old resourceVersion
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}

OnRequest = Callable[[str, str, int], None]


# -- errors -------------------------------------------------------------------------


class KubeConfigError(InputError):
    """No usable kubeconfig / in-cluster configuration, or a malformed one."""


class ApiError(Exception):
    """An API request failed.

    ``status`` is the HTTP status (0 for connection errors and timeouts after the
    retries), ``reason`` the Kubernetes Status reason (``"NotFound"``,
    ``"AlreadyExists"``, ``"Expired"``, ...), ``message`` the Status message and
    ``body`` the decoded response body (or text), when there was one.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        body: Any = None,
        method: str = "",
        path: str = "",
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body
        self.method = method
        self.path = path
        super().__init__(status, reason, message)

    def __str__(self) -> str:
        where = f"{self.method} {self.path}".strip() or "request"
        message = " ".join(self.message.split())
        if len(message) > 500:
            message = message[:497] + "..."
        code = str(self.status) if self.status else "connection error"
        return f"{where}: {code} {self.reason}: {message}"


class NotFound(ApiError):
    """HTTP 404."""


class Conflict(ApiError):
    """HTTP 409: a stale resourceVersion, a failed precondition or an apply conflict."""


class AlreadyExists(Conflict):
    """HTTP 409 with reason ``AlreadyExists`` (create of an existing object)."""


class Gone(ApiError):
    """HTTP 410 (or a watch ERROR event with code 410): the resourceVersion is too old."""


def make_error(
    status: int, body: Any, *, method: str = "", path: str = "", text: str = ""
) -> ApiError:
    """The right :class:`ApiError` subclass for ``status`` and a decoded body."""
    reason = REASONS.get(status, f"HTTP{status}")
    message = text
    if isinstance(body, dict) and body.get("kind") == "Status":
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or message)
    if not message:
        message = reason
    cls: type[ApiError] = ApiError
    if status == 404:
        cls = NotFound
    elif status == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif status == 410:
        cls = Gone
    return cls(status, reason, message, body=body, method=method, path=path)


# -- paths --------------------------------------------------------------------------


def api_path(
    api_version: str, plural: str, name: str | None = None, *, namespace: str | None = None
) -> str:
    """The REST path of a collection (``name=None``) or of one object.

    >>> api_path("v1", "nodes", "n1")
    '/api/v1/nodes/n1'
    >>> api_path("coordination.k8s.io/v1", "leases", "x", namespace="ns")
    '/apis/coordination.k8s.io/v1/namespaces/ns/leases/x'
    """
    if not api_version or not plural:
        raise ValueError("api_version and plural must not be empty")
    prefix = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
    parts = [prefix]
    if namespace:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name:
        parts.append(quote(name, safe=":@"))
    return "/".join(parts)


def _split_resource_path(path: str) -> tuple[str, bool] | None:
    """(plural, is_named) for a resource path, None for a non-resource URL."""
    segs = [s for s in path.split("?", 1)[0].split("/") if s]
    if len(segs) >= 3 and segs[0] == "api":
        rest = segs[2:]
    elif len(segs) >= 4 and segs[0] == "apis":
        rest = segs[3:]
    else:
        return None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        rest = rest[2:]
    return rest[0], len(rest) >= 2


def resource_of(path: str) -> str:
    """The resource plural of a request path (``"nodes"`` for ``/api/v1/nodes/n1``).

    For ``/api/v1/namespaces/ns`` it is ``"namespaces"``; for non-resource URLs
    (``/apis``, ``/version``) it is the path itself.
    """
    split = _split_resource_path(path)
    return split[0] if split else path.split("?", 1)[0]


def _verb(method: str, path: str, params: Mapping[str, str] | None, content_type: str) -> str:
    method = method.upper()
    if method == "GET":
        if params and str(params.get("watch", "")).lower() in ("true", "1"):
            return "watch"
        split = _split_resource_path(path)
        return "list" if split is not None and not split[1] else "get"
    if method == "PATCH":
        return "apply" if content_type == APPLY_PATCH else "patch"
    return {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())


# -- TLS and credentials ------------------------------------------------------------


def _ssl_context(
    verify: ssl.SSLContext | str | bool, cert: tuple[str, str] | None
) -> ssl.SSLContext:
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


class _Token:
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


# -- watch --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event of a watch stream: ADDED, MODIFIED, DELETED or BOOKMARK."""

    type: str
    object: dict[str, Any]


class Watch(ResponseStream, Iterator[WatchEvent]):
    """An open watch stream; iterate it for :class:`WatchEvent` values.

    The iterator ends normally when the server closes the stream (timeoutSeconds)
    or after :meth:`close`.  It raises :class:`Gone` for a 410 ERROR event and
    :class:`ApiError` for other ERROR events, malformed lines and broken
    connections (status 0).  :meth:`close` may be called from any thread and
    returns at once; a thread blocked reading the stream wakes up promptly.
    """

    def __init__(self, client: KubeClient, response: httpx.Response, path: str) -> None:
        super().__init__(response, client._forget_watch)
        self._client = client
        self._path = path
        self._lines: Iterator[str] | None = None

    def __next__(self) -> WatchEvent:
        if self._finished:
            raise StopIteration
        try:
            return self._next_event()
        except BaseException:
            self._finish()
            raise

    def _next_event(self) -> WatchEvent:
        if self._lines is None:
            self._lines = self._response.iter_lines()
        while True:
            if self._closed:
                raise StopIteration
            try:
                line = next(self._lines)
            except StopIteration:
                raise
            except httpx.TimeoutException as exc:
                if self._closed:
                    raise StopIteration from None
                raise ApiError(
                    0,
                    "Timeout",
                    f"watch stream read timed out: {exc}",
                    method="WATCH",
                    path=self._path,
                ) from exc
            except Exception as exc:
                if self._closed:
                    raise StopIteration from None
                raise ApiError(
                    0,
                    "ConnectionError",
                    f"watch stream broken: {exc!r}",
                    method="WATCH",
                    path=self._path,
                ) from exc
            line = line.strip()
            if not line:
                continue
            return self._decode(line)

    def _decode(self, line: str) -> WatchEvent:
        try:
            raw = json.loads(line)
            etype = str(raw["type"])
            obj = raw["object"]
            if not isinstance(obj, dict):
                raise TypeError("object is not a JSON object")
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(
                0,
                "BadWatchEvent",
                f"malformed watch event {line[:200]!r}: {exc}",
                method="WATCH",
                path=self._path,
            ) from exc
        if etype == "ERROR":
            code = obj.get("code")
            status = code if isinstance(code, int) and code > 0 else 500
            raise make_error(status, obj, method="WATCH", path=self._path)
        return WatchEvent(etype, obj)


# -- the client ---------------------------------------------------------------------


class KubeClient:
    """A synchronous Kubernetes API client (see the module docstring).

    ``verify`` is an SSL context, a CA bundle path or a bool; ``cert`` is
    ``(cert_file, key_file)``.  ``transport`` replaces the HTTP transport for every
    request (the TLS arguments are then unused); ``wrap_transport`` receives the
    transport the client built (or ``transport``) and returns the one to use,
    e.g. :class:`calico_rr.testing.faults.FaultTransport`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: tuple[str, str] | None = None,
        token: str | None = None,
        token_file: str | None = None,
        transport: httpx.BaseTransport | None = None,
        wrap_transport: Callable[[httpx.BaseTransport], httpx.BaseTransport] | None = None,
        proxy: str | None = None,
        field_manager: str = "calico-rr",
        user_agent: str = "calico-rr",
        timeout: float = 30.0,
        max_retries: int = 6,
        backoff_base: float = 0.2,
        backoff_max: float = 10.0,
        on_request: OnRequest | None = None,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise KubeConfigError(f"server URL must start with https:// or http://: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.field_manager = field_manager
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.on_request = on_request
        self._token = _Token(token, token_file)
        # The TLS context in use (None when a given ``transport`` does its own TLS).
        self.ssl_context: ssl.SSLContext | None = (
            verify if isinstance(verify, ssl.SSLContext) else None
        )
        if transport is None:
            self.ssl_context = _ssl_context(verify, cert)
            transport = httpx.HTTPTransport(verify=self.ssl_context, proxy=proxy)
        if wrap_transport is not None:
            transport = wrap_transport(transport)
        self.transport: httpx.BaseTransport = transport
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": user_agent},
            trust_env=False,
            follow_redirects=False,
        )
        self._closed = threading.Event()
        self._watch_lock = threading.Lock()
        self._watches: set[Watch] = set()

    # -- construction from configuration ----------------------------------------------

    @classmethod
    def from_kubeconfig(
        cls, path: str | os.PathLike[str], *, context: str | None = None, **kw: Any
    ) -> KubeClient:
        """A client for ``context`` (default: current-context) of a kubeconfig file.

        Supports certificate-authority(-data), client-certificate/client-key (file or
        -data), token, tokenFile, insecure-skip-tls-verify and proxy-url.  Relative
        file paths are relative to the kubeconfig's directory.  ``kw`` goes to
        :class:`KubeClient` (not ``verify``/``cert``/``token``/``token_file``).
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
                ssl_ctx = _ssl_context(False, None)
            elif cluster.get("certificate-authority-data"):
                pem = _b64(
                    cluster["certificate-authority-data"], name, "certificate-authority-data"
                )
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
        return cls(
            str(server),
            verify=ssl_ctx,
            token=str(token) if token else None,
            token_file=rel(token_file) if token_file and not token else None,
            proxy=kw.pop("proxy", None) or cluster.get("proxy-url") or None,
            **kw,
        )

    @classmethod
    def in_cluster(
        cls, *, service_account_dir: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR, **kw: Any
    ) -> KubeClient:
        """A client for the API server of the pod's own cluster.

        The token is read from the projected service-account token file and re-read
        when it changes.
        """
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
            raise KubeConfigError(
                f"cannot load the service-account CA: {exc}", obj=str(sa)
            ) from exc
        return cls(f"https://{host}:{port}", verify=ssl_ctx, token_file=str(sa / "token"), **kw)

    @classmethod
    def load(
        cls,
        kubeconfig: str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        **kw: Any,
    ) -> KubeClient:
        """Explicit kubeconfig, else ``$KUBECONFIG`` (first entry), else in-cluster
        when ``KUBERNETES_SERVICE_HOST`` is set, else ``~/.kube/config``."""
        if kubeconfig:
            return cls.from_kubeconfig(kubeconfig, context=context, **kw)
        env = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        if env:
            return cls.from_kubeconfig(env[0], context=context, **kw)
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster(**kw)
        default = Path("~/.kube/config").expanduser()
        if default.is_file():
            return cls.from_kubeconfig(default, context=context, **kw)
        raise KubeConfigError(
            "no Kubernetes configuration: pass --kubeconfig, set KUBECONFIG, run in a pod "
            f"or create {default}"
        )

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Close every open watch and the connection pool.  Thread-safe; later
        requests raise ``ApiError`` (status 0, reason ``ClientClosed``)."""
        self._closed.set()
        with self._watch_lock:
            watches = list(self._watches)
        for w in watches:
            w.close()
        self._http.close()

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _forget_watch(self, w: Watch) -> None:
        with self._watch_lock:
            self._watches.discard(w)

    # -- the core request loop -------------------------------------------------------------

    def _report(self, verb: str, resource: str, status: int) -> None:
        if self.on_request is None:
            return
        try:
            self.on_request(verb, resource, status)
        except Exception:
            log.exception("on_request hook failed")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                seconds = float(retry_after)
            except ValueError:
                seconds = -1.0
            if seconds >= 0:
                return min(seconds, self.backoff_max)
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * (2**attempt)))

    def _closed_error(self, method: str, path: str) -> ApiError:
        return ApiError(0, "ClientClosed", "the client is closed", method=method, path=path)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        stream: bool = False,
        timeout: httpx.Timeout | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries; returns the final response (any status)."""
        verb = _verb(method, path, params, content_type)
        resource = resource_of(path)
        content: bytes | None
        if body is None:
            content = None
        elif isinstance(body, bytes):
            content = body
        elif isinstance(body, str):
            content = body.encode()
        else:
            content = json.dumps(body, separators=(",", ":")).encode()
        attempt = 0
        while True:
            if self._closed.is_set():
                raise self._closed_error(method, path)
            headers: dict[str, str] = dict(extra_headers or {})
            if content is not None:
                headers["Content-Type"] = content_type
            token = self._token.get()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            request = self._http.build_request(
                method,
                path,
                params=dict(params) if params else None,
                content=content,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            retry_after: str | None = None
            try:
                response = self._http.send(request, stream=stream)
            except (httpx.TransportError, RuntimeError) as exc:
                self._report(verb, resource, 0)
                if self._closed.is_set():
                    raise self._closed_error(method, path) from exc
                if isinstance(exc, RuntimeError) or attempt >= self.max_retries:
                    reason = (
                        "Timeout" if isinstance(exc, httpx.TimeoutException) else "ConnectionError"
                    )
                    raise ApiError(
                        0,
                        reason,
                        f"{exc!r} (after {attempt + 1} attempts)",
                        method=method,
                        path=path,
                    ) from exc
            else:
                self._report(verb, resource, response.status_code)
                if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
                    return response
                retry_after = response.headers.get("Retry-After")
                response.close()
            delay = self._delay(attempt, retry_after)
            log.debug("%s %s: retry %d in %.2fs", method, path, attempt + 1, delay)
            attempt += 1
            if self._closed.wait(delay):
                raise self._closed_error(method, path)

    def _error_from(self, method: str, path: str, response: httpx.Response) -> ApiError:
        text = response.text
        body: Any = text
        with contextlib.suppress(ValueError):
            body = json.loads(text) if text else None
        return make_error(
            response.status_code, body, method=method, path=path, text=text[:1000].strip()
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call (with retries); returns the decoded JSON body or raises ApiError.

        ``body`` may be bytes, a str or any JSON value.
        """
        response = self._send(method, path, params=params, body=body, content_type=content_type)
        if response.status_code >= 400:
            raise self._error_from(method, path, response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                response.status_code,
                "BadResponse",
                f"response is not JSON: {response.text[:200]!r}",
                method=method,
                path=path,
            ) from exc

    # -- verbs -------------------------------------------------------------------------

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None if it does not exist."""
        try:
            obj = self.request("GET", path)
        except NotFound:
            return None
        return _as_dict(obj, "GET", path)

    def list(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 500,
    ) -> tuple[list[dict[str, Any]], str]:
        """All items of a collection (following ``continue``) and the list's
        resourceVersion.

        Items get the ``apiVersion``/``kind`` of the list filled in when missing (the
        server omits them in lists), so they look like watch objects.  If a continue
        token expires (410) the list restarts from scratch once.
        """
        restarted = False
        items: list[dict[str, Any]] = []
        cont: str | None = None
        version = ""
        while True:
            params: dict[str, str] = {}
            if limit:
                params["limit"] = str(limit)
            if label_selector:
                params["labelSelector"] = label_selector
            if field_selector:
                params["fieldSelector"] = field_selector
            if cont:
                params["continue"] = cont
            try:
                page = _as_dict(self.request("GET", path, params=params), "GET", path)
            except Gone:
                if cont is None or restarted:
                    raise
                log.info("LIST %s: continue token expired, restarting the list", path)
                restarted, items, cont, version = True, [], None, ""
                continue
            meta = page.get("metadata") or {}
            if not version:
                version = str(meta.get("resourceVersion") or "")
            api_version = page.get("apiVersion")
            kind = str(page.get("kind") or "")
            item_kind = kind[: -len("List")] if kind.endswith("List") else None
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    if api_version and "apiVersion" not in item:
                        item["apiVersion"] = api_version
                    if item_kind and "kind" not in item:
                        item["kind"] = item_kind
                    items.append(item)
            cont = meta.get("continue") or None
            if not cont:
                return items, version

    def create(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``obj`` to the collection ``path``; raises AlreadyExists if it exists."""
        params = {"fieldManager": self.field_manager}
        return _as_dict(self.request("POST", path, params=params, body=obj), "POST", path)

    def replace(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT ``obj`` (with metadata.resourceVersion for optimistic concurrency:
        a stale one raises Conflict)."""
        params = {"fieldManager": self.field_manager}
        return _as_dict(self.request("PUT", path, params=params, body=obj), "PUT", path)

    def patch(self, path: str, body: Any, *, patch_type: str = "merge") -> dict[str, Any]:
        """PATCH with a merge ("merge"), JSON ("json") or strategic ("strategic") patch."""
        try:
            content_type = PATCH_TYPES[patch_type]
        except KeyError:
            raise ValueError(f"unknown patch_type {patch_type!r}") from None
        params = {"fieldManager": self.field_manager}
        result = self.request("PATCH", path, params=params, body=body, content_type=content_type)
        return _as_dict(result, "PATCH", path)

    def apply(
        self,
        path: str,
        obj: Mapping[str, Any],
        *,
        force: bool = False,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply ``obj`` at its own ``path`` as ``field_manager``.

        Fields this manager applied before and omits now are removed; fields owned by
        other managers stay.  ``force=True`` takes over conflicting fields.
        """
        if subresource:
            path = f"{path.rstrip('/')}/{subresource}"
        params = {"fieldManager": self.field_manager}
        if force:
            params["force"] = "true"
        result = self.request("PATCH", path, params=params, body=obj, content_type=APPLY_PATCH)
        return _as_dict(result, "PATCH", path)

    def delete(self, path: str, *, resource_version: str | None = None) -> bool:
        """DELETE; False if the object was already gone.  With ``resource_version``
        the delete only happens if the object is still at that version (else
        Conflict)."""
        body = None
        if resource_version:
            body = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "preconditions": {"resourceVersion": resource_version},
            }
        try:
            self.request("DELETE", path, body=body)
        except NotFound:
            return False
        return True

    def served_groups(self) -> set[str]:
        """Names of the API groups the server serves (from ``GET /apis``)."""
        body = _as_dict(self.request("GET", "/apis"), "GET", "/apis")
        return {
            str(g["name"]) for g in body.get("groups") or [] if isinstance(g, dict) and "name" in g
        }

    def watch(
        self,
        path: str,
        *,
        resource_version: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        allow_bookmarks: bool = True,
    ) -> Watch:
        """Open a watch on the collection ``path`` from ``resource_version``.

        The request is sent (with the usual retries) before this returns, so an HTTP
        error (403, 410 -> Gone, ...) raises here; events are read while iterating.
        The server ends the stream after ``timeout_seconds``; the read timeout is a
        little longer.  Stop it early with ``Watch.close()`` or ``KubeClient.close()``.
        """
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(int(timeout_seconds)),
        }
        if allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        timeout = httpx.Timeout(self.timeout, read=timeout_seconds + WATCH_READ_SLACK)
        # A dedicated connection per watch: Watch.close() shuts its socket down, which
        # must never hit a pooled connection that another request is using.
        response = self._send(
            "GET",
            path,
            params=params,
            stream=True,
            timeout=timeout,
            extra_headers={"Connection": "close"},
        )
        if response.status_code >= 400:
            try:
                response.read()
            finally:
                response.close()
            raise self._error_from("WATCH", path, response)
        w = Watch(self, response, path)
        with self._watch_lock:
            self._watches.add(w)
        if self._closed.is_set():
            w.close()
        return w


# -- helpers ----------------------------------------------------------------------------


def _as_dict(value: Any, method: str, path: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise ApiError(
        0,
        "BadResponse",
        f"expected a JSON object, got {type(value).__name__}",
        method=method,
        path=path,
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
