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
from itertools import combinations

from calico_rr.core.planning.config import (
    CROSS_LABEL,
    QUORUM_LABEL,
    RR_LABEL,
    SLOT_LABEL,
    PlanConfig,
    cluster_id,
)
from calico_rr.core.planning.topologies.base import (
    ClusterView,
    Layout,
    PeerRule,
    Slot,
    clients_of,
    fill,
    rr_labels,
    slot_selector,
    slot_zones,
)
from calico_rr.model import Node

NAME = "quorum"


def group_size(redundancy: int) -> tuple[int, int]:
    """(RRs per group, home quorum size) for a redundancy."""
    if redundancy >= 3:
        return 2 * redundancy - 3, redundancy - 1
    return 1, 1


def build(view: ClusterView, config: PlanConfig, rrs: int) -> Layout:
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
    slots = tuple(
        Slot(f"r{i}", "rr", cluster_id(config.cluster_id_base, i // m + 1), zones[i])
        for i in range(groups_n * m)
    )
    holders, warnings = fill(view, slots, config)
    by_id = {s.id: s for s in slots}
    labels: dict[str, dict[str, str]] = {
        node: rr_labels(by_id[slot]) for slot, node in holders.items()
    }
    group_of = {s.id: i // m for i, s in enumerate(slots)}

    # Home quorums: every majority subset of each group (one group alone: all of it).
    quorums: list[tuple[str, tuple[Slot, ...]]] = []
    for g in range(groups_n):
        members = slots[g * m : (g + 1) * m]
        subsets = [members] if groups_n == 1 else list(combinations(members, majority))
        for k, subset in enumerate(subsets):
            quorums.append((f"q{g}-{k}", tuple(subset)))
    quorum_index = {name: i for i, (name, _) in enumerate(quorums)}
    cross_possible = groups_n >= 2 and config.redundancy >= 2

    load = {s.id: 0 for s in slots}
    assigned: dict[str, tuple[str, str | None]] = {}
    pending: list[Node] = []
    clients = clients_of(view, holders)
    for node in clients:
        q = node.labels.get(QUORUM_LABEL)
        x = node.labels.get(CROSS_LABEL)
        # Kept while the quorum exists, even if the zone layout moved (stability
        # first; zones guide new choices only).
        if q in quorum_index:
            home = quorums[quorum_index[q]][1]
            home_group = group_of[home[0].id]
            if not cross_possible and x is None:
                assigned[node.name] = (q, None)
            elif cross_possible and x in group_of and group_of[x] != home_group:
                assigned[node.name] = (q, x)
            else:
                pending.append(node)
                continue
            for s in home:
                load[s.id] += 1
            if x is not None and cross_possible:
                load[x] += 1
        else:
            pending.append(node)

    zone_cache: dict[str | None, list[int]] = {}
    for node in pending:
        z = view.zone_of.get(node.name)
        if z not in zone_cache:
            ok = [i for i, (_, sl) in enumerate(quorums) if _valid_zone(view, z, sl)]
            zone_cache[z] = ok or list(range(len(quorums)))
        best = min(zone_cache[z], key=lambda i: (sum(load[s.id] for s in quorums[i][1]), i))
        qname, home = quorums[best]
        for s in home:
            load[s.id] += 1
        cross: str | None = None
        if cross_possible:
            home_group = group_of[home[0].id]
            other = [s for s in slots if group_of[s.id] != home_group]
            if view.zones:
                other = [s for s in other if _cross_zone_ok(s.zone, z, home)] or other
            cross = min((s.id for s in other), key=lambda sid: (load[sid], int(sid[1:])))
            load[cross] += 1
        assigned[node.name] = (qname, cross)

    for name, (qname, cross) in assigned.items():
        entry = {QUORUM_LABEL: qname}
        if cross is not None:
            entry[CROSS_LABEL] = cross
        labels[name] = entry

    rules = [PeerRule("calico-rr-rr-mesh", f"has({RR_LABEL})", f"has({RR_LABEL})")]
    for qname, subset in quorums:
        rules.append(
            PeerRule(
                f"calico-rr-{qname}",
                f"{QUORUM_LABEL} == '{qname}'",
                slot_selector([s.id for s in subset]),
            )
        )
    if cross_possible:
        for s in slots:
            rules.append(
                PeerRule(
                    f"calico-rr-cross-{s.id}",
                    f"{CROSS_LABEL} == '{s.id}'",
                    f"{SLOT_LABEL} == '{s.id}'",
                )
            )
    return Layout(
        topology=NAME,
        slots=slots,
        holders=holders,
        node_labels=labels,
        rules=tuple(rules),
        redundancy=majority + (1 if cross_possible else 0),
        warnings=tuple(warnings),
        shape={
            "cluster_ids": groups_n,
            "rrs_per_group": m,
            "home_quorum": majority,
            "quorums": len(quorums),
            "cross_rr": cross_possible,
        },
    )


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
