"""The HTTP layer under the datastore clients (``kube.client``, ``etcd.client``).

This is the only module of the package that imports the HTTP library (httpx): the
clients take the names they use from here, so swapping the library is one file.
Besides the re-exported names it holds what both clients share:

* :class:`Closable` gives anything with a ``close()`` the ``with`` statement.
* :class:`ResponseStream` is a long-lived response read line by line in one thread
  and closed from any other: the lifecycle both watch streams share.
* :class:`StreamingClient` owns the connection pool and the open streams, so that
  closing a client stops every watch it opened.

Stopping a stream from another thread: :meth:`ResponseStream.close` is thread-safe,
idempotent and returns at once: it shuts the connection's socket down, which wakes a
reader blocked in ``recv`` (closing the fd alone does not, on Linux).  The plain
``socket.socket.shutdown`` is used also for an ``SSLSocket``, so the SSL state the
reading thread is using is not touched.  A stream's connection is its own, never
pooled ("Connection: close"), so the shutdown cannot hit another request.
:meth:`ResponseStream._finish` releases the response once, from the reading side,
so the connection's state is only ever touched by one thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, Self

from httpx import (
    USE_CLIENT_DEFAULT,
    BaseTransport,
    Client,
    ConnectError,
    ConnectTimeout,
    HTTPTransport,
    PoolTimeout,
    Request,
    Response,
    SyncByteStream,
    Timeout,
    TimeoutException,
    TransportError,
)

__all__ = [
    "USE_CLIENT_DEFAULT",
    "BaseTransport",
    "Client",
    "Closable",
    "ConnectError",
    "ConnectTimeout",
    "HTTPTransport",
    "PoolTimeout",
    "Request",
    "Response",
    "ResponseStream",
    "StreamingClient",
    "SyncByteStream",
    "Timeout",
    "TimeoutException",
    "TransportError",
]


class Closable:
    """``with`` support: leaving the block calls :meth:`close`."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ResponseStream(Closable):
    """A streamed response; ``forget`` is called with it once it is released."""

    def __init__(self, response: Response, forget: Callable[[Any], None]) -> None:
        self._response = response
        self._forget_stream = forget  # the client's set of open streams
        self._lock = threading.Lock()
        self._closed = False
        self._finished = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __iter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # The ``with`` block is the reading side, so it may also release the response.
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


class StreamingClient(Closable):
    """A client over ``http`` that keeps track of the streams it opened.

    Thread-safe: the connection pool is, and the set of open streams has a lock.
    """

    def __init__(self, http: Client) -> None:
        self._http = http
        self._streams_lock = threading.Lock()
        self._streams: set[ResponseStream] = set()

    def close(self) -> None:
        """Close every open stream, then the connection pool."""
        with self._streams_lock:
            streams = list(self._streams)
        for s in streams:
            s.close()
        self._http.close()

    def _track(self, stream: ResponseStream) -> None:
        with self._streams_lock:
            self._streams.add(stream)

    def _forget(self, stream: ResponseStream) -> None:
        with self._streams_lock:
            self._streams.discard(stream)
