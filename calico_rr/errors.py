"""Errors raised by the core and the adapters.

Every error that comes from bad input names the object and the field, so the
CLI can print one clear line and exit with code 2 without writing anything.
"""

from __future__ import annotations


class CalicoRRError(Exception):
    """Base class of every error calico-rr raises on purpose."""


class InputError(CalicoRRError):
    """Malformed or invalid input: a file, a resource, a flag."""

    def __init__(self, message: str, *, obj: str | None = None, field: str | None = None) -> None:
        self.obj = obj
        self.field = field
        self.detail = message
        where = ""
        if obj:
            where = obj
            if field:
                where += f" field {field}"
            where += ": "
        elif field:
            where = f"field {field}: "
        super().__init__(where + message)


class ConfigError(CalicoRRError):
    """An invalid planner configuration (bad ratio, redundancy < 1, ...)."""
