"""An etcd watch stream (what :meth:`EtcdClient.watch
<calico_rr.adapters.etcd.client.EtcdClient.watch>` returns).

A watch can be stopped from any thread: :meth:`Watch.close` shuts its own
connection's socket down, which wakes a blocked reader at once (see
:mod:`calico_rr.adapters.http`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from calico_rr.adapters.etcd.errors import (
    GRPC_PERMISSION_DENIED,
    Compacted,
    EtcdAuthError,
    EtcdError,
    EtcdTLSError,
    EtcdUnavailable,
    explain,
)
from calico_rr.adapters.etcd.values import (
    EventType,
    Progress,
    WatchEvent,
    header_revision,
    int64,
    key_value,
)
from calico_rr.adapters.http import Response, ResponseStream, TransportError


class Watch(ResponseStream, Iterator[WatchEvent | Progress]):
    """An open watch.  Iterating yields :class:`WatchEvent` and :class:`Progress`.

    ``next_revision`` is where a new watch must start to continue exactly after what
    was delivered: one past the last revision whose events were all yielded (etcd
    sends the events of one revision together), or past a progress notification.
    The iterator ends after :meth:`close`; it raises :class:`Compacted` when etcd
    cancels the watch for compaction, :class:`EtcdUnavailable` when the stream
    breaks or the server ends it, :class:`EtcdError` for another cancellation.
    """

    def __init__(
        self,
        response: Response,
        forget: Callable[[Any], None],
        endpoint: str,
        prefix: str,
        start_revision: int,
        read_timeout: float,
    ) -> None:
        super().__init__(response, forget)
        self._read_timeout = read_timeout  # for explaining a stream that fell silent
        self.endpoint = endpoint
        self.prefix = prefix
        self.next_revision = start_revision
        self.watch_id: int | None = None
        self._lines: Iterator[str] | None = None
        self._pending: list[WatchEvent] = []

    def wait_created(self) -> None:
        """Read up to etcd's "created" answer."""
        try:
            while self.watch_id is None:
                result = self._read()
                if result is None:
                    raise EtcdUnavailable(
                        f"{self.endpoint}: watch stream ended before the watch was created",
                        endpoint=self.endpoint,
                    )
                self._handle(result)
        except BaseException:
            self.close()
            self._finish()
            raise

    def _read(self) -> dict[str, Any] | None:
        """The next ``result`` object of the stream, None at its end."""
        if self._lines is None:
            self._lines = self._response.iter_lines()
        while True:
            try:
                line = next(self._lines)
            except StopIteration:
                return None
            except TransportError as exc:
                if self._closed:
                    return None
                why = explain(exc, self._read_timeout, self.endpoint)
                cls = EtcdTLSError if why.tls else EtcdUnavailable
                raise cls(
                    f"watch of {self.prefix} on {self.endpoint}: {why.reason}",
                    failures=[(self.endpoint, why.reason)],
                    endpoint=self.endpoint,
                ) from exc
            except Exception as exc:
                if self._closed:
                    return None
                raise EtcdUnavailable(
                    f"watch of {self.prefix} on {self.endpoint}: stream broken ({exc!r})",
                    endpoint=self.endpoint,
                ) from exc
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except ValueError:
                raise EtcdError(
                    f"watch on {self.endpoint}: malformed line {line[:200]!r}",
                    endpoint=self.endpoint,
                ) from None
            if isinstance(data, dict) and isinstance(data.get("result"), dict):
                result: dict[str, Any] = data["result"]
                return result
            error = data.get("error") if isinstance(data, dict) else None
            raise EtcdError(
                f"watch of {self.prefix} on {self.endpoint}: {error or line[:200]}",
                endpoint=self.endpoint,
            )

    def _handle(self, result: dict[str, Any]) -> Progress | None:
        compact = int64(result.get("compact_revision"))
        if compact:
            raise Compacted(
                f"watch of {self.prefix} from revision {self.next_revision}: etcd has "
                f"compacted history up to revision {compact}; list again and watch from "
                "the list's revision + 1",
                compact,
                endpoint=self.endpoint,
            )
        if result.get("canceled"):
            reason = str(result.get("cancel_reason") or "")
            if "permission denied" in reason:
                raise EtcdAuthError(
                    f"watch of {self.prefix} on {self.endpoint} refused: {reason} (the etcd "
                    "user lacks read permission on this prefix; see docs/ETCD.md)",
                    endpoint=self.endpoint,
                    code=GRPC_PERMISSION_DENIED,
                )
            raise EtcdError(
                f"watch of {self.prefix} on {self.endpoint} canceled: "
                f"{reason or 'no reason given'}",
                endpoint=self.endpoint,
            )
        revision = header_revision(result)
        if result.get("created"):
            self.watch_id = int64(result.get("watch_id"))
            if self.next_revision == 0:
                # "From now on": everything after the creation revision comes.
                self.next_revision = revision + 1
            return None
        events = result.get("events") or []
        if not events:
            # A progress notification: everything up to `revision` was sent.
            self.next_revision = max(self.next_revision, revision + 1)
            return Progress(revision)
        for raw in events:
            self._pending.append(
                WatchEvent(
                    type=EventType.DELETE if raw.get("type") == "DELETE" else EventType.PUT,
                    kv=key_value(raw.get("kv") or {}),
                )
            )
        return None

    def __next__(self) -> WatchEvent | Progress:
        if self._closed or self._finished:
            self._finish()
            raise StopIteration
        try:
            while not self._pending:
                if self._closed:
                    raise StopIteration
                result = self._read()
                if result is None:
                    if self._closed:
                        raise StopIteration
                    raise EtcdUnavailable(
                        f"watch of {self.prefix} on {self.endpoint}: the server ended the "
                        f"stream; resume from revision {self.next_revision}",
                        endpoint=self.endpoint,
                    )
                progress = self._handle(result)
                if progress is not None:
                    return progress
            event = self._pending.pop(0)
            if not self._pending or self._pending[0].revision != event.revision:
                self.next_revision = max(self.next_revision, event.revision + 1)
            return event
        except StopIteration:
            self._finish()
            raise
        except BaseException:
            self.close()
            self._finish()
            raise
