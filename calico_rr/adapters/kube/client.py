"""A thin, synchronous Kubernetes API client on top of :mod:`calico_rr.adapters.http`.

Design decisions
----------------
* **Plain dicts in, plain dicts out.**  The operator works on JSON objects; no
  generated models, no discovery cache.  Paths are built with
  :func:`~calico_rr.adapters.kube.api.api_path`.
* **One place for retries.**  Every request goes through ``KubeClient._send``, which
  retries 429/500/502/503/504 and connection errors with exponential backoff and full
  jitter (``uniform(0, min(backoff_max, backoff_base * 2**attempt))``), honouring a
  ``Retry-After`` header given in seconds (capped at ``backoff_max``).  Other 4xx
  are never retried: a 409 is the caller's business (optimistic concurrency).  A
  POST retried after a connection error may have been applied already; callers
  treat ``AlreadyExists`` as success.
* **Errors carry the Kubernetes Status** (:mod:`~calico_rr.adapters.kube.errors`).
* **TLS and credentials** come from :mod:`~calico_rr.adapters.kube.kubeconfig`.
  The token is asked of a :class:`~calico_rr.adapters.kube.credentials.TokenSource`
  before every request; on a 401 the source may fetch a new one (an exec plugin
  does) and the request is sent once more.
* **Environment proxies are ignored** (``trust_env=False``) so that the transport we
  build (or the one passed in, e.g. a fault injector) is always the one used; a
  kubeconfig ``proxy-url`` is honoured.
* **Watches can be stopped from any thread** (:mod:`~calico_rr.adapters.kube.watch`).
  Each watch has its own connection (``Connection: close``, never returned to the
  pool), so stopping it cannot hit another request.
* **Thread-safety.**  The HTTP client and its connection pool are safe for
  concurrent use; the only other shared state (token cache, the set of open watches)
  is guarded by locks.
* **Metrics hook.**  ``on_request(verb, resource, status)`` is called once per HTTP
  request actually sent (retries count separately), with the Kubernetes verb
  (get/list/watch/create/update/patch/apply/delete), the resource plural (the
  request path for non-resource URLs such as ``/apis``) and the status (0 for a
  connection error).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import ssl
import threading
from collections.abc import Callable, Mapping
from typing import Any

from calico_rr.adapters.http import (
    USE_CLIENT_DEFAULT,
    BaseTransport,
    Client,
    HTTPTransport,
    Response,
    StreamingClient,
    Timeout,
    TimeoutException,
    TransportError,
)
from calico_rr.adapters.kube.api import APPLY_PATCH, PATCH_TYPES, resource_of, verb_of
from calico_rr.adapters.kube.credentials import BearerToken, TokenSource
from calico_rr.adapters.kube.errors import (
    ApiError,
    Gone,
    KubeConfigError,
    NotFound,
    make_error,
)
from calico_rr.adapters.kube.kubeconfig import (
    SERVICE_ACCOUNT_DIR,
    ClusterAccess,
    find_access,
    in_cluster_access,
    kubeconfig_access,
)
from calico_rr.adapters.kube.tls import ssl_context
from calico_rr.adapters.kube.watch import Watch

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Extra read timeout on top of a watch's timeoutSeconds: the server closes the
# stream itself at timeoutSeconds, so a read that waits longer means a dead peer.
WATCH_READ_SLACK = 15.0

OnRequest = Callable[[str, str, int], None]

# -- the client ---------------------------------------------------------------------


class KubeClient(StreamingClient):
    """A synchronous Kubernetes API client (see the module docstring).

    ``verify`` is an SSL context or a bool.  ``transport`` replaces the HTTP transport for every
    request (the TLS arguments are then unused); ``wrap_transport`` receives the
    transport the client built (or ``transport``) and returns the one to use,
    e.g. :class:`calico_rr.testing.faults.FaultTransport`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        verify: ssl.SSLContext | bool = True,
        token: str | None = None,
        token_file: str | None = None,
        credentials: TokenSource | None = None,
        transport: BaseTransport | None = None,
        wrap_transport: Callable[[BaseTransport], BaseTransport] | None = None,
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
        self._token: TokenSource = (
            credentials if credentials is not None else BearerToken(token, token_file)
        )
        # The TLS context in use (None when a given ``transport`` does its own TLS).
        self.ssl_context: ssl.SSLContext | None = (
            verify if isinstance(verify, ssl.SSLContext) else None
        )
        if transport is None:
            self.ssl_context = ssl_context(verify)
            transport = HTTPTransport(verify=self.ssl_context, proxy=proxy)
        if wrap_transport is not None:
            transport = wrap_transport(transport)
        self.transport: BaseTransport = transport
        super().__init__(
            Client(
                base_url=self.base_url,
                transport=transport,
                timeout=timeout,
                headers={"Accept": "application/json", "User-Agent": user_agent},
                trust_env=False,
                follow_redirects=False,
            )
        )
        self._closed = threading.Event()

    # -- construction from configuration ----------------------------------------------

    @classmethod
    def from_kubeconfig(
        cls, path: str | os.PathLike[str], *, context: str | None = None, **kw: Any
    ) -> KubeClient:
        """A client for ``context`` (default: current-context) of a kubeconfig file
        (see :func:`~calico_rr.adapters.kube.kubeconfig.kubeconfig_access`)."""
        return cls._connect(kubeconfig_access(path, context), **kw)

    @classmethod
    def in_cluster(
        cls, *, service_account_dir: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR, **kw: Any
    ) -> KubeClient:
        """A client for the API server of the pod's own cluster.

        The token is read from the projected service-account token file and re-read
        when it changes.
        """
        return cls._connect(in_cluster_access(service_account_dir), **kw)

    @classmethod
    def load(
        cls,
        kubeconfig: str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        **kw: Any,
    ) -> KubeClient:
        """Explicit kubeconfig, else ``$KUBECONFIG`` (its files merged as kubectl
        merges them), else in-cluster when ``KUBERNETES_SERVICE_HOST`` is set, else
        ``~/.kube/config``."""
        return cls._connect(find_access(kubeconfig, context), **kw)

    @classmethod
    def _connect(cls, access: ClusterAccess, **kw: Any) -> KubeClient:
        """A client for ``access``; ``kw`` goes to :class:`KubeClient` (not
        ``verify``/``token``/``token_file``/``credentials``; a ``proxy``
        given wins)."""
        return cls(
            access.server,
            verify=access.verify,
            token=access.token,
            token_file=access.token_file,
            credentials=access.credentials,
            proxy=kw.pop("proxy", None) or access.proxy,
            **kw,
        )

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close every open watch and the connection pool.  Thread-safe; later
        requests raise ``ApiError`` (status 0, reason ``ClientClosed``)."""
        self._closed.set()
        super().close()

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
        params: Mapping[str, str] | None,
        content: bytes | None,
        *,
        content_type: str = "application/json",
        stream: bool = False,
        timeout: Timeout | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send with retries; returns the final response (any status)."""
        verb = verb_of(method, path, params, content_type)
        resource = resource_of(path)
        attempt = 0
        reauthenticated = False
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
                timeout=timeout if timeout is not None else USE_CLIENT_DEFAULT,
            )
            retry_after: str | None = None
            try:
                response = self._http.send(request, stream=stream)
            except (TransportError, RuntimeError) as exc:
                self._report(verb, resource, 0)
                if self._closed.is_set():
                    raise self._closed_error(method, path) from exc
                if isinstance(exc, RuntimeError) or attempt >= self.max_retries:
                    reason = "Timeout" if isinstance(exc, TimeoutException) else "ConnectionError"
                    raise ApiError(
                        0,
                        reason,
                        f"{exc!r} (after {attempt + 1} attempts)",
                        method=method,
                        path=path,
                    ) from exc
            else:
                self._report(verb, resource, response.status_code)
                # A 401 may mean an expired or revoked plugin token: get a fresh one
                # and try again, once per request (a second 401 is the answer).
                if (
                    response.status_code == 401
                    and not reauthenticated
                    and self._token.rejected(token)
                ):
                    reauthenticated = True
                    response.close()
                    log.info("%s %s: 401, retrying with fresh credentials", method, path)
                    continue
                if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
                    return response
                retry_after = response.headers.get("Retry-After")
                response.close()
            delay = self._delay(attempt, retry_after)
            log.debug("%s %s: retry %d in %.2fs", method, path, attempt + 1, delay)
            attempt += 1
            if self._closed.wait(delay):
                raise self._closed_error(method, path)

    def _error_from(self, method: str, path: str, response: Response) -> ApiError:
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
        response = self._send(method, path, params, _encode(body), content_type=content_type)
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

    def _object(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """:meth:`request` for an answer that must be a JSON object."""
        value = self.request(method, path, **kw)
        if isinstance(value, dict):
            return value
        raise ApiError(
            0,
            "BadResponse",
            f"expected a JSON object, got {type(value).__name__}",
            method=method,
            path=path,
        )

    def _manager(self) -> dict[str, str]:
        return {"fieldManager": self.field_manager}

    # -- verbs -------------------------------------------------------------------------

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None if it does not exist."""
        try:
            return self._object("GET", path)
        except NotFound:
            return None

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
            params = {"limit": str(limit)} if limit else {}
            params.update(_selectors(label_selector, field_selector))
            if cont:
                params["continue"] = cont
            try:
                page = self._object("GET", path, params=params)
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
        return self._object("POST", path, params=self._manager(), body=obj)

    def replace(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT ``obj`` (with metadata.resourceVersion for optimistic concurrency:
        a stale one raises Conflict)."""
        return self._object("PUT", path, params=self._manager(), body=obj)

    def patch(self, path: str, body: Any, *, patch_type: str = "merge") -> dict[str, Any]:
        """PATCH with a merge ("merge"), JSON ("json") or strategic ("strategic") patch."""
        try:
            content_type = PATCH_TYPES[patch_type]
        except KeyError:
            raise ValueError(f"unknown patch_type {patch_type!r}") from None
        return self._object(
            "PATCH", path, params=self._manager(), body=body, content_type=content_type
        )

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
        params = self._manager()
        if force:
            params["force"] = "true"
        return self._object("PATCH", path, params=params, body=obj, content_type=APPLY_PATCH)

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
        body = self._object("GET", "/apis")
        return {
            str(g["name"]) for g in body.get("groups") or [] if isinstance(g, dict) and "name" in g
        }

    def watch(
        self,
        path: str,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
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
            "allowWatchBookmarks": "true",
        }
        params.update(_selectors(label_selector, None))
        timeout = Timeout(self.timeout, read=timeout_seconds + WATCH_READ_SLACK)
        # A dedicated connection per watch: Watch.close() shuts its socket down, which
        # must never hit a pooled connection that another request is using.
        response = self._send(
            "GET",
            path,
            params,
            None,
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
        w = Watch(response, self._forget, path)
        self._track(w)
        if self._closed.is_set():
            w.close()
        return w


# -- helpers ----------------------------------------------------------------------------


def _encode(body: Any) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, separators=(",", ":")).encode()


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    params = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params
