"""Fault injection for :class:`~calico_rr.adapters.kube.client.KubeClient` (tests only).

:class:`FaultTransport` wraps a real HTTP transport.  Queue faults with
:meth:`FaultTransport.fail_next`; each request is checked against the queued faults
in order, and the first one that matches answers the request **instead of** the
server (the request never reaches it, so an injected 409 changes nothing).  When a
fault's ``times`` are used up it is dropped.  Everything else passes through.

Typical use::

    client, faults = fault_client(cp.admin_kubeconfig)
    faults.fail_next("PATCH", "/api/v1/nodes/n1", 409)          # one Conflict
    faults.fail_next(None, "/api/v1/nodes", 503, times=2)       # two 503s (retried)
    faults.fail_next("GET", "watch=true", 0, watch_gone=True)   # next watch: ERROR 410
    faults.fail_next("GET", "/api/v1/nodes", 0)                 # status 0: connection error
    ...
    assert faults.injected == 4

Without the helper, pass the class as the client's transport wrapper:
``KubeClient.from_kubeconfig(path, wrap_transport=FaultTransport)``; the
``FaultTransport`` is then ``client.transport``.

``path_contains`` is matched against the request's path *and query string* (e.g.
``"/api/v1/nodes?"`` only matches the collection, ``"watch=true"`` only watches).
``method`` is the HTTP method (GET/POST/PUT/PATCH/DELETE) or None for any.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from calico_rr.adapters.http import BaseTransport, ConnectError, Request, Response, SyncByteStream
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import REASONS


def status_body(code: int, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    """A Kubernetes ``Status`` object as the API server sends for a failure."""
    reason = reason or REASONS.get(code, "Unknown")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message or f"injected fault: {code} {reason}",
        "reason": reason,
        "code": code,
    }


@dataclass(slots=True)
class Fault:
    """One queued fault (see :meth:`FaultTransport.fail_next`)."""

    method: str | None
    path_contains: str
    status: int
    times: int
    body: dict[str, Any] | None = None
    watch_gone: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, target: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path_contains in target
        )


class FaultTransport(BaseTransport):
    """An HTTP transport that injects queued faults and passes the rest to ``inner``.

    Thread-safe.  :attr:`injected` counts the faults answered; :attr:`log` keeps
    ``(method, path?query, status)`` of every request (status 0 for an injected
    connection error).
    """

    def __init__(self, inner: BaseTransport) -> None:
        self.inner = inner
        self.injected = 0
        self.log: list[tuple[str, str, int]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def fail_next(
        self,
        method: str | None,
        path_contains: str,
        status: int,
        *,
        times: int = 1,
        body: dict[str, Any] | None = None,
        watch_gone: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer the next ``times`` matching requests with a fault.

        * ``status`` > 0: an HTTP error with ``body`` (default: a Status object with
          the usual reason for the code, e.g. 409 "Conflict", 410 "Expired").
          ``headers`` are added (e.g. ``{"Retry-After": "0"}``).
        * ``status`` == 0: a connection error (``ConnectError``).
        * ``watch_gone=True``: HTTP 200 with a single watch ``ERROR`` event carrying a
          410 Status, then the end of the stream, exactly as kube-apiserver reports a
          too-old resourceVersion on a watch (``status`` is ignored).
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        fault = Fault(method, path_contains, status, times, body, watch_gone, dict(headers or {}))
        with self._lock:
            self._faults.append(fault)
        return fault

    @property
    def pending(self) -> int:
        """How many injections are still queued (sum of the remaining ``times``)."""
        with self._lock:
            return sum(f.times for f in self._faults)

    def _take(self, method: str, target: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(method, target):
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._faults[i]
                    self.injected += 1
                    return fault
            return None

    def handle_request(self, request: Request) -> Response:
        target = request.url.raw_path.decode("ascii", "replace")
        fault = self._take(request.method, target)
        if fault is None:
            response = self.inner.handle_request(request)
            with self._lock:
                self.log.append((request.method, target, response.status_code))
            return response
        status = 200 if fault.watch_gone else fault.status
        with self._lock:
            self.log.append((request.method, target, status))
        if fault.watch_gone:
            event = {"type": "ERROR", "object": fault.body or status_body(410)}
            return Response(
                200,
                headers={"Content-Type": "application/json", **fault.headers},
                stream=_OneShot(json.dumps(event).encode() + b"\n"),
                request=request,
            )
        if fault.status == 0:
            raise ConnectError("injected connection error", request=request)
        return Response(
            fault.status,
            headers={"Content-Type": "application/json", **fault.headers},
            content=json.dumps(fault.body or status_body(fault.status)).encode(),
            request=request,
        )

    def close(self) -> None:
        self.inner.close()


class _OneShot(SyncByteStream):
    def __init__(self, data: bytes) -> None:
        self._data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self._data


def fault_client(kubeconfig: Any, **kw: Any) -> tuple[KubeClient, FaultTransport]:
    """A :class:`KubeClient` for ``kubeconfig`` whose real transport is wrapped in a
    :class:`FaultTransport`; ``kw`` goes to ``KubeClient.from_kubeconfig``."""
    holder: list[FaultTransport] = []

    def wrap(inner: BaseTransport) -> BaseTransport:
        holder.append(FaultTransport(inner))
        return holder[0]

    client = KubeClient.from_kubeconfig(kubeconfig, wrap_transport=wrap, **kw)
    return client, holder[0]
