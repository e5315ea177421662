"""Quorum cluster (domain.md 3-4): RRs grouped under shared cluster IDs.

Good for about 1000-2000 nodes.  RRs come in groups of ``m`` that share a
cluster ID; all RRs peer in one mesh (plain iBGP inside a group, client
sessions across groups, domain.md 2).

Correctness, from the BIRD rules of domain.md 3: a client C's route reaches a
client D unless *all* of C's RRs and all of D's RRs sit in one group and the two
sets are disjoint (lab A: group mates do not pass client routes on).  So each
client peers with

* a **home quorum**: a majority (``redundancy - 1``) of the ``m = 2*redundancy - 3``
  RRs of one group - any two majorities of a group intersect; and
* one **cross RR** from another group.

Two clients then always share an RR or reach each other across groups.  After
the loss of any one RR a client keeps RRs in two groups (it lost a home RR) or
its whole home quorum (it lost its cross RR), and two clients left inside one
group still share an RR because their quorums are majorities.  The verifier
checks this on the rendered resources (tests/test_topologies.py).  With the
default redundancy 3: groups of 3, clients on 2 of them plus 1 elsewhere.

The proposal's table (13 RRs, one ID, clients on C(13,3) triples) breaks the
shared-RR property; see docs/TOPOLOGIES.md.  The RR count is rounded up to whole
groups, and with zones to a whole number per zone (2000 nodes at ratio 0.005 ->
10 -> 12 RRs, 4 groups of 3).

BGPPeers: one RR mesh + one per home quorum (3 per group) + one per cross RR:
2R + 1 for redundancy 3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from calico_rr.core.planning.config import CROSS_LABEL, QUORUM_LABEL, PlanConfig, cluster_id
from calico_rr.core.planning.topologies.base import (
    RR_MESH,
    ClusterView,
    Draft,
    Layout,
    Slot,
    clients_of,
    slot_zones,
)
from calico_rr.model import Node

NAME = "quorum"

#: A client's home quorum and its cross RR (a slot id; None without cross RRs).
_Choice = tuple[str, str | None]


def group_size(redundancy: int) -> tuple[int, int]:
    """(RRs per group, home quorum size) for a redundancy."""
    if redundancy >= 3:
        return 2 * redundancy - 3, redundancy - 1
    return 1, 1


def build(view: ClusterView, config: PlanConfig, rrs: int) -> Layout:
    m, majority, groups_n, zones = _grouping(view, config, rrs)
    slots = tuple(
        Slot(f"r{i}", "rr", cluster_id(config.cluster_id_base, i // m + 1), zones[i])
        for i in range(groups_n * m)
    )
    draft = Draft.filled(view, slots, config)
    groups = _Groups.of(slots, m, majority, cross=groups_n >= 2 and config.redundancy >= 2)
    for name, (qname, cross) in _assign(view, clients_of(view, draft.holders), groups).items():
        entry = {QUORUM_LABEL: qname}
        if cross is not None:
            entry[CROSS_LABEL] = cross
        draft.labels[name] = entry

    draft.rules.append(RR_MESH)
    for qname, subset in groups.quorums.items():
        draft.group_rule(f"calico-rr-{qname}", QUORUM_LABEL, qname, subset)
    if groups.cross:
        for s in slots:
            draft.group_rule(f"calico-rr-cross-{s.id}", CROSS_LABEL, s.id, [s])
    return draft.layout(
        NAME,
        redundancy=majority + (1 if groups.cross else 0),
        shape={
            "cluster_ids": groups_n,
            "rrs_per_group": m,
            "home_quorum": majority,
            "quorums": len(groups.quorums),
            "cross_rr": groups.cross,
        },
    )


def _grouping(
    view: ClusterView, config: PlanConfig, rrs: int
) -> tuple[int, int, int, list[str | None]]:
    """(RRs per group, home quorum size, groups, home zones of the slots)."""
    m, majority = group_size(config.redundancy)
    want = max(2 * m, rrs) if config.redundancy >= 2 else max(1, rrs)
    # Whole groups, and (with zones) a whole number of RRs per zone so every zone
    # carries the same share of quorums and cross RRs (base.round_to_zones).
    # Not at any price: when that would turn most nodes into RRs (say redundancy 4,
    # groups of 5, in 4 zones: 20 RRs), whole groups are enough.
    step = math.lcm(m, max(1, len(view.zones)))
    total = -(-want // step) * step
    if total > max(want, len(view.eligible) // 2):
        total = -(-want // m) * m
    zones = slot_zones(view, config, total)
    groups_n = len(zones) // m
    if groups_n == 0:  # tiny cluster: one group of whatever we have
        m, groups_n = max(1, len(zones)), 1 if zones else 0
    if groups_n == 1:  # one group: its clients must all share an RR - peer with all
        majority = m
    return m, majority, groups_n, zones


@dataclass(frozen=True, slots=True)
class _Groups:
    """The RR groups of a layout and the home quorums drawn from them."""

    slots: tuple[Slot, ...]
    #: slot id -> its group's number
    group_of: dict[str, int]
    #: quorum name -> its RRs, group by group
    quorums: dict[str, tuple[Slot, ...]]
    #: clients also peer with a cross RR from another group
    cross: bool

    @classmethod
    def of(cls, slots: tuple[Slot, ...], m: int, majority: int, *, cross: bool) -> _Groups:
        # Home quorums: every majority subset of each group (a group alone is its
        # own only quorum: its majority is then all of it).
        quorums: dict[str, tuple[Slot, ...]] = {}
        for g in range(len(slots) // m):
            for k, subset in enumerate(combinations(slots[g * m : (g + 1) * m], majority)):
                quorums[f"q{g}-{k}"] = subset
        group_of = {s.id: i // m for i, s in enumerate(slots)}
        return cls(slots, group_of, quorums, cross)


def _assign(view: ClusterView, clients: Sequence[Node], groups: _Groups) -> dict[str, _Choice]:
    """Every client's home quorum and cross RR: the current ones while they fit
    (_current), then the least-loaded choice that suits each new client's zone."""
    if not groups.quorums:  # no RR could be placed: the gate names the cut-off nodes
        return {}
    load = {s.id: 0 for s in groups.slots}
    assigned = {n.name: c for n in clients if (c := _current(n, groups)) is not None}
    for choice in assigned.values():
        _take(load, groups, choice)
    zone_cache: dict[str | None, list[str]] = {}
    for node in [n for n in clients if n.name not in assigned]:
        z = view.zone_of.get(node.name)
        if z not in zone_cache:
            ok = [q for q, sl in groups.quorums.items() if _valid_zone(view, z, sl)]
            zone_cache[z] = ok or list(groups.quorums)
        assigned[node.name] = choice = _choose(view, z, zone_cache[z], groups, load)
        _take(load, groups, choice)
    return assigned


def _current(node: Node, groups: _Groups) -> _Choice | None:
    """The client's current quorum and cross RR while they still fit the groups.

    Kept while the quorum exists, even if the zone layout moved (stability first;
    zones guide new choices only).
    """
    qname = node.labels.get(QUORUM_LABEL)
    cross = node.labels.get(CROSS_LABEL)
    if qname not in groups.quorums:
        return None
    if not groups.cross:
        return (qname, None) if cross is None else None
    home_group = groups.group_of[groups.quorums[qname][0].id]
    if cross in groups.group_of and groups.group_of[cross] != home_group:
        return qname, cross
    return None


def _choose(
    view: ClusterView, zone: str | None, options: list[str], groups: _Groups, load: dict[str, int]
) -> _Choice:
    """The least-loaded quorum of ``options`` (the first on ties: they are in quorum
    order), and the least-loaded cross RR of another group that suits the zone."""
    qname = min(options, key=lambda q: sum(load[s.id] for s in groups.quorums[q]))
    if not groups.cross:
        return qname, None
    home = groups.quorums[qname]
    other = [s for s in groups.slots if groups.group_of[s.id] != groups.group_of[home[0].id]]
    if view.zones:
        other = [s for s in other if _cross_zone_ok(s.zone, zone, home)] or other
    return qname, min((s.id for s in other), key=lambda sid: (load[sid], int(sid[1:])))


def _take(load: dict[str, int], groups: _Groups, choice: _Choice) -> None:
    qname, cross = choice
    for s in groups.quorums[qname]:
        load[s.id] += 1
    if cross is not None:
        load[cross] += 1


def _cross_zone_ok(cross_zone: str | None, own: str | None, home: tuple[Slot, ...]) -> bool:
    """Where the cross RR may live so that losing any one zone leaves the client
    (if it survives) with RRs in two groups or its whole home quorum.

    A home quorum spanning the client's zone and another takes its cross RR in
    the client's own zone: losing the other zone leaves a home RR plus the cross
    RR, in two groups.  A home quorum inside the client's zone takes its cross RR
    elsewhere, which also makes the client's RRs span two zones (domain.md 6).
    """
    if len({s.zone for s in home}) >= 2:
        return cross_zone == own
    return cross_zone != own


def _valid_zone(view: ClusterView, zone: str | None, subset: tuple[Slot, ...]) -> bool:
    """With zones, a home quorum must hold an RR in the client's own zone; the
    cross RR is then taken from another zone, so the client's RRs span two zones
    (domain.md 6) without forcing every quorum to span zones, which would leave
    the lone RR of a zone inside a group with most of the load."""
    if not view.zones:
        return True
    return zone in {s.zone for s in subset}
