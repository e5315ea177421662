"""What ``calico-rr doctor``'s checks return (:class:`Finding`), what they read
(:class:`CheckView`) and the few helpers their messages share (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.doctor.inventory import Inventory

#: How many names a message lists before "and N more".
EXAMPLES = 5


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the doctor found: what, where, the evidence, and what to do."""

    id: str
    severity: Severity
    object: str  # "Kind/name" or "Kind/namespace/name"; "Node/a (+3 more)" for a group
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "severity": self.severity.value,
            "object": self.object,
            "message": self.message,
            "fix": self.fix,
        }

    def sort_key(self) -> tuple[int, str, str, str]:
        return (_RANK[self.severity], self.id, self.object, self.message)


@dataclass(frozen=True, slots=True)
class CheckView:
    """The inventory plus the session graph and a few counts every check uses."""

    inv: Inventory
    graph: SessionGraph
    budget: int

    @property
    def mesh_on(self) -> bool:
        return self.inv.state.config.mesh_enabled

    def mesh_members(self) -> list[str]:
        return [n.name for n in self.graph.nodes if n.cluster_id is None]

    def rrs(self) -> list[int]:
        return [i for i in range(len(self.graph.nodes)) if self.graph.is_rr(i)]


# -- helpers for messages -------------------------------------------------------------


def group_object(kind: str, names: Sequence[str]) -> str:
    """``Node/a``, or ``Node/a (+3 more)`` for a group of objects."""
    head = f"{kind}/{names[0]}"
    return head if len(names) == 1 else f"{head} (+{len(names) - 1} more)"


def examples(names: Sequence[str]) -> str:
    shown = ", ".join(names[:EXAMPLES])
    return shown if len(names) <= EXAMPLES else f"{shown} and {len(names) - EXAMPLES} more"


def plural(n: int, word: str) -> str:
    return f"{n} {word if n == 1 else word + 's'}"
