"""What the etcd client takes and returns, and how the JSON gateway encodes it:
keys and values are base64, 64-bit integers are JSON strings."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Fence:
    """A write condition: ``key`` exists and is attached to ``lease`` (the leader
    key under the leader's lease).  A write carrying a fence lands only while the
    writer still holds leadership in etcd itself: one transaction, no window
    between "am I the leader?" and the write."""

    key: str
    lease: int


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    def json(self) -> Any:
        return json.loads(self.value)


@dataclass(frozen=True, slots=True)
class ListResult:
    """Every key under a prefix, in key order, as of ``revision`` (one snapshot)."""

    kvs: tuple[KeyValue, ...]
    revision: int


class EventType(StrEnum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change.  For DELETE, ``kv`` holds only the key and the deletion's revision."""

    type: EventType
    kv: KeyValue

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class Progress:
    """Every change up to ``revision`` has been delivered (a progress notification)."""

    revision: int


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int


# -- the JSON gateway's encoding ---------------------------------------------


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(text: object) -> bytes:
    return base64.b64decode(str(text)) if text else b""


def int64(value: object) -> int:
    """A protobuf int64 in JSON: a string (or a number); absent means 0."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


def key_value(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=unb64(raw.get("key")).decode("utf-8", "surrogateescape"),
        value=unb64(raw.get("value")),
        create_revision=int64(raw.get("create_revision")),
        mod_revision=int64(raw.get("mod_revision")),
        version=int64(raw.get("version")),
        lease=int64(raw.get("lease")),
    )


def header_revision(data: dict[str, Any]) -> int:
    return int64((data.get("header") or {}).get("revision"))


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # an empty prefix (or all 0xff): to the end of the keyspace
