"""The steps every topology builder takes the same way.

Each builder fills its RR slots, labels the holders as RRs, adds its clients'
labels and its peerings, and returns a :class:`~base.Layout`; a :class:`Draft`
carries those pieces from one step to the next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from calico_rr.core.planning.config import RR_LABEL, PlanConfig
from calico_rr.core.planning.topologies.base import (
    ClusterView,
    Layout,
    PeerRule,
    Slot,
    fill,
    rr_labels,
    slot_selector,
)

#: Every RR peers with every other RR (single, multi and quorum clusters).
RR_MESH = PeerRule("calico-rr-rr-mesh", f"has({RR_LABEL})", f"has({RR_LABEL})")


@dataclass(slots=True)
class Draft:
    """A layout in the making: the filled slots, then labels and rules as they come."""

    slots: tuple[Slot, ...]
    #: slot id -> node name
    holders: dict[str, str]
    warnings: list[str]
    #: node name -> planner labels; starts with the holders' RR labels
    labels: dict[str, dict[str, str]]
    rules: list[PeerRule] = field(default_factory=list)

    @classmethod
    def of(cls, slots: Sequence[Slot], holders: dict[str, str], warnings: list[str]) -> Draft:
        by_id = {s.id: s for s in slots}
        labels = {node: rr_labels(by_id[slot]) for slot, node in holders.items()}
        return cls(tuple(slots), holders, warnings, labels)

    @classmethod
    def filled(cls, view: ClusterView, slots: Sequence[Slot], config: PlanConfig) -> Draft:
        """Choose a node for each slot (base.fill) and label it as an RR."""
        holders, warnings = fill(view, slots, config)
        return cls.of(slots, holders, warnings)

    def group_rule(self, name: str, label: str, value: str, members: Sequence[Slot]) -> None:
        """One client group's BGPPeer: nodes with ``label=value`` peer with ``members``."""
        selector = slot_selector([s.id for s in members])
        self.rules.append(PeerRule(name, f"{label} == '{value}'", selector))

    def layout(self, topology: str, redundancy: int, shape: Mapping[str, object]) -> Layout:
        return Layout(
            topology=topology,
            slots=self.slots,
            holders=self.holders,
            node_labels=self.labels,
            rules=tuple(self.rules),
            redundancy=redundancy,
            warnings=tuple(self.warnings),
            shape=shape,
        )
