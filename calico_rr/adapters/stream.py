"""A long-lived HTTP response read line by line in one thread and closed from any
other: the lifecycle both watch streams share (``kube.client.Watch``,
``etcd.client.Watch``).

:meth:`ResponseStream.close` is thread-safe, idempotent and returns at once: it
shuts the connection's socket down, which wakes a reader blocked in ``recv``.  The
plain ``socket.socket.shutdown`` is used also for an ``SSLSocket``, so the SSL state
the reading thread is using is not touched.  A watch connection is its own, never
pooled ("Connection: close"), so the shutdown cannot hit another request.
:meth:`_finish` releases the response once, from the reading side."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import httpx

__all__ = ["ResponseStream"]


class ResponseStream:
    def __init__(self, response: httpx.Response, forget: Callable[[Any], None]) -> None:
        self._response = response
        self._forget_stream = forget  # the client's list of open streams
        self._lock = threading.Lock()
        self._closed = False
        self._finished = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __iter__(self) -> Self:
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self._finish()

    def close(self) -> None:
        """Stop the stream: thread-safe, idempotent, returns at once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._finished:
                return  # the response is released already; its socket is not ours
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _finish(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        with contextlib.suppress(Exception):
            self._response.close()
        self._forget_stream(self)
