"""What every topology returns, and the cluster view every topology gets.

A topology is a pure function ``build(view, config, rrs) -> Layout``:

* **slots** - the route-reflector positions (id, role, cluster ID, home zone,
  rack).  A slot is what BGPPeer selectors point at (``calico-rr.io/rr-slot``),
  so replacing the node that holds a slot changes one node's labels and no
  BGPPeer: the failed RR's clients move to its successor and nobody else moves.
* **node labels** - the full set of planner labels each node should carry
  (RR labels on slot holders, group labels on clients).  The planner's memory
  *is* these labels: re-planning reads them back from the nodes and keeps every
  assignment that is still valid, so a node joining changes nobody else.
* **rules** - group peerings, each rendered as one BGPPeer with a
  ``nodeSelector`` and a ``peerSelector`` (never one object per client).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from calico_rr.core.bgp.families import families_of_nodes
from calico_rr.core.planning.candidates import SlotRequest, fill_slots, healthy
from calico_rr.core.planning.config import (
    GROUP_LABEL,
    ROLE_LABEL,
    RR_LABEL,
    SLOT_LABEL,
    PlanConfig,
)
from calico_rr.core.planning.sizing import zone_slots
from calico_rr.model import Node


@dataclass(frozen=True, slots=True)
class Slot:
    id: str
    role: str  # "rr" | "rack-rr" | "spine"
    cluster_id: str
    zone: str | None = None
    rack: str | None = None


@dataclass(frozen=True, slots=True)
class PeerRule:
    """One BGPPeer: every node matching ``node_selector`` peers with every node
    matching ``peer_selector`` (and, by Calico's automatic reverse peering, back)."""

    name: str
    node_selector: str
    peer_selector: str


@dataclass(frozen=True, slots=True)
class Layout:
    topology: str
    slots: tuple[Slot, ...]
    #: slot id -> node name (slots that could not be filled are absent)
    holders: Mapping[str, str]
    #: node name -> planner labels it must carry (nodes absent: carry none)
    node_labels: Mapping[str, Mapping[str, str]]
    rules: tuple[PeerRule, ...]
    #: RRs per client the topology aims for (single cluster: all RRs)
    redundancy: int
    warnings: tuple[str, ...] = ()
    #: free-form shape description for reports (e.g. quorum groups, racks)
    shape: Mapping[str, object] = field(default_factory=dict)

    def cluster_ids(self) -> dict[str, str]:
        """node name -> RR cluster ID, for filled slots."""
        by_slot = {s.id: s for s in self.slots}
        return {node: by_slot[slot].cluster_id for slot, node in self.holders.items()}


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The cluster as the topologies see it; built once by the planner."""

    nodes: tuple[Node, ...]  # every input node, sorted by name
    eligible: tuple[Node, ...]  # may be RRs (candidates.ineligibility is None)
    zone_of: Mapping[str, str | None]  # node -> zone (None: no zones in use)
    zones: tuple[str, ...]  # distinct zones, sorted; empty when fewer than two

    @property
    def bgp_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.addressed)

    def count_by_zone(self, nodes: Sequence[Node]) -> dict[str, int]:
        counts = dict.fromkeys(self.zones, 0)
        for n in nodes:
            z = self.zone_of.get(n.name)
            if z in counts:
                counts[z] += 1
        return counts


# -- helpers shared by the topologies ------------------------------------------

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def label_value(text: str, max_len: int = 63) -> str:
    """A valid Kubernetes label value derived from ``text`` (deterministic).

    Valid values pass through; others are cleaned and, when too long, cut and
    suffixed with a short hash so distinct inputs stay distinct.
    """
    if len(text) <= max_len and _LABEL_VALUE.match(text):
        return text
    clean = re.sub(r"[^-A-Za-z0-9_.]", "-", text).strip("-_.") or "x"
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{clean[: max_len - 9].rstrip('-_.')}-{digest}"


def quote_set(values: Sequence[str]) -> str:
    return "{" + ", ".join(f"'{v}'" for v in values) + "}"


def slot_selector(slot_ids: Sequence[str]) -> str:
    """peerSelector for a set of RR slots."""
    if len(slot_ids) == 1:
        return f"{SLOT_LABEL} == '{slot_ids[0]}'"
    return f"{SLOT_LABEL} in {quote_set(slot_ids)}"


def fill(
    view: ClusterView,
    slots: Sequence[Slot],
    config: PlanConfig,
    *,
    rack_of: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Choose a node for each slot (candidates.fill_slots)."""
    requests = [SlotRequest(s.id, s.zone, s.rack) for s in slots]
    return fill_slots(
        requests,
        view.eligible,
        zone_of=view.zone_of,
        rack_of=rack_of,
        config=config,
        zone_order=view.zones,
        families=families_of_nodes(view.nodes),
    )


def rr_labels(slot: Slot) -> dict[str, str]:
    return {RR_LABEL: "true", SLOT_LABEL: slot.id, ROLE_LABEL: slot.role}


def assign_groups(
    clients: Sequence[Node],
    groups: Sequence[str],
    *,
    allowed: Callable[[Node], Sequence[int]],
    label: str = GROUP_LABEL,
) -> dict[str, str]:
    """Give each client one group; keep a client's current group while it exists.

    New (or invalidated) clients go to the least-loaded allowed group, lowest
    index on ties, in name order - deterministic, and a joining node touches
    only its own label (issue: "a node joining changes no other node's RRs").
    """
    index = {g: i for i, g in enumerate(groups)}
    load = [0] * len(groups)
    out: dict[str, str] = {}
    pending: list[Node] = []
    for node in clients:
        current = node.labels.get(label)
        i = index.get(current) if current is not None else None
        # A current group is kept even when the zone layout moved under it (an RR
        # spilled to another zone): stability first, zones guide new choices.
        if i is not None:
            out[node.name] = groups[i]
            load[i] += 1
        else:
            pending.append(node)
    for node in pending:
        options = allowed(node)
        best = min(options, key=lambda i: (load[i], i))
        out[node.name] = groups[best]
        load[best] += 1
    return out


def zone_allowed(
    view: ClusterView, group_slots: Sequence[Sequence[Slot]]
) -> Callable[[Node], Sequence[int]]:
    """Groups a client may use: with zones, those spanning two or more zones with
    one RR in the client's own zone (domain.md 6); all groups otherwise, and as
    the fallback when no group qualifies."""
    everything = list(range(len(group_slots)))
    if not view.zones:
        return lambda _node: everything
    zones_of_group = [{s.zone for s in g} for g in group_slots]
    cache: dict[str | None, list[int]] = {}

    def allowed(node: Node) -> Sequence[int]:
        z = view.zone_of.get(node.name)
        if z not in cache:
            ok = [i for i, zs in enumerate(zones_of_group) if z in zs and len(zs) >= 2]
            if not ok:
                ok = [i for i, zs in enumerate(zones_of_group) if len(zs) >= 2] or everything
            cache[z] = ok
        return cache[z]

    return allowed


def slot_zones(view: ClusterView, config: PlanConfig, count: int) -> list[str | None]:
    """Home zones for ``count`` RR slots (interleaved, spilling; sizing.zone_slots).

    Without zones: ``count`` slots with no home zone, clamped to eligible nodes.
    With ``per_zone_sizing`` (and no explicit ``--rrs``) each zone is sized on its
    own ready nodes instead of splitting ``count``.
    """
    if not view.zones:
        return [None] * min(count, len(view.eligible))
    ready = view.count_by_zone([n for n in view.nodes if n.addressed and healthy(n)])
    eligible = view.count_by_zone(view.eligible)
    total = None if (config.per_zone_sizing and config.rrs is None) else count
    return list(zone_slots(total, ready, eligible, config))


def round_to_zones(view: ClusterView, count: int) -> int:
    """Round an RR count up to a whole number per zone.

    With interleaved slots, a count that is a multiple of the zone count makes
    every zone look the same to the group layout, so client groups can both span
    zones (domain.md 6) and load every RR equally.  With 3 RRs in 2 zones, say,
    the lone RR of one zone would have to serve every client.
    """
    zones = len(view.zones)
    if zones < 2:
        return count
    return -(-count // zones) * zones


def clients_of(view: ClusterView, holders: Mapping[str, str]) -> list[Node]:
    """Every BGP node that holds no RR slot (unhealthy ones too: they still need routes)."""
    rr_nodes = set(holders.values())
    return [n for n in view.nodes if n.addressed and n.name not in rr_nodes]


# -- the steps every topology builder takes the same way -------------------------
#
# Each builder fills its RR slots, labels the holders as RRs, adds its clients'
# labels and its peerings, and returns a Layout; a Draft carries those pieces
# from one step to the next.

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
        """Choose a node for each slot (:func:`fill`) and label it as an RR."""
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
