"""Errors raised by the core and the adapters.

Every error that comes from bad input names the object and the field, so the
CLI can print one clear line and exit with code 2 without writing anything; a
runtime failure (:class:`DatastoreError`, the adapters' own) exits 1.
"""

from __future__ import annotations

import reprlib

#: Control characters, escaped where they would break a message or note into lines
#: (an object named "a\nb" in a hand-written file).
_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(32), 0x7F]} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def one_line(text: str) -> str:
    """``text`` with control characters escaped and lone surrogates (undecodable bytes
    read with ``surrogateescape``) spelled out, so it prints as one line anywhere."""
    escaped = text.translate(_ESCAPES)
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


class CalicoRRError(Exception):
    """Base class of every error calico-rr raises on purpose.  Its text is always one
    printable line: the CLI prints it as ``calico-rr: error: ...``."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class InputError(CalicoRRError):
    """Malformed or invalid input: a file, a resource, a flag."""

    def __init__(self, message: str, *, obj: str | None = None, field: str | None = None) -> None:
        self.obj = obj
        self.field = field
        self.detail = message
        where = " ".join(filter(None, [obj, f"field {field}" if field else None]))
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(CalicoRRError):
    """An invalid planner configuration (bad ratio, redundancy < 1, ...)."""


class DatastoreError(CalicoRRError):
    """A datastore could not be read: unreachable, refusing the request, timing out.
    A runtime failure, not bad input: the CLI exits 1, not 2."""


class _Repr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # more digits than Python converts to text
            return f"<an integer of {x.bit_length()} bits>"


_REPR = _Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 80
_REPR.maxother = 80
_REPR.maxlong = 40


def safe_repr(value: object) -> str:
    """A short ``repr`` of an input value for an error message; never raises.

    Plain ``repr`` can fail on input (an integer of more than 4300 digits raises
    ValueError, a deeply nested list RecursionError) or print megabytes; this one is
    bounded in length and depth.
    """
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError):  # a str or repr of some odd object failing
        return f"<{type(value).__name__}>"
