"""A Kubernetes watch stream (what :meth:`KubeClient.watch
<calico_rr.adapters.kube.client.KubeClient.watch>` returns).

A watch can be stopped from any thread: ``Watch.close()`` (or ``KubeClient.close()``,
which closes every open watch) shuts its own connection's socket down (see
:mod:`calico_rr.adapters.http`).  The consuming thread then sees the end of the
stream and the iterator stops normally.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from calico_rr.adapters.http import Response, ResponseStream, TimeoutException
from calico_rr.adapters.kube.errors import ApiError, make_error


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

    def __init__(self, response: Response, forget: Callable[[Any], None], path: str) -> None:
        super().__init__(response, forget)
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
            except Exception as exc:
                if self._closed:
                    raise StopIteration from None
                if isinstance(exc, TimeoutException):
                    reason, message = "Timeout", f"watch stream read timed out: {exc}"
                else:
                    reason, message = "ConnectionError", f"watch stream broken: {exc!r}"
                raise ApiError(0, reason, message, method="WATCH", path=self._path) from exc
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
