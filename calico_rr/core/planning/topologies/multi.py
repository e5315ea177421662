"""Multi cluster (domain.md 4): one cluster ID per RR, RRs in a full mesh.

Good for about 500-2000 nodes.  With distinct cluster IDs every RR reflects a
client's route to every other RR, which reflects it to its own clients
(lab C shows the one trap: two RRs under the *same* ID with a third in between;
here every ID is unique, so it cannot happen).

Clients are put in *groups*; group ``g<i>`` peers with the ``redundancy``
consecutive slots ``r<i> .. r<i+redundancy-1>`` (mod R).  Each slot is in exactly
``redundancy`` groups, so equal group sizes mean equal RR load, and there are
R groups, hence R + 1 BGPPeers instead of one per client (the earlier prototype
wrote 3 per client, about 15,000 at 5000 nodes).  Slots are laid out with zones
interleaved, so consecutive slots sit in different zones and each client gets
a group with one RR in its own zone (domain.md 6).  With zones the RR count is
rounded up to a whole number per zone (``round_to_zones``) so that this costs no
balance.
2000 nodes, 11 RRs: 1989 clients x 3 / 11 = 542-543 clients and 10 RR peers per
RR, 552-553 sessions (talk: ~542 / 10 / ~552).
"""

from __future__ import annotations

import math

from calico_rr.core.bgp.verify.fanout import ROUTES_PER_NODE_BUDGET
from calico_rr.core.planning.candidates import Degrading
from calico_rr.core.planning.config import GROUP_LABEL, PlanConfig, cluster_id
from calico_rr.core.planning.topologies.base import (
    RR_MESH,
    ClusterView,
    Draft,
    Layout,
    Slot,
    assign_groups,
    clients_of,
    round_to_zones,
    slot_zones,
    zone_allowed,
)

NAME = "multi"


def paths_per_prefix(rrs: int, per_client: int) -> int:
    """Most add-path paths one client holds for another client's prefix here.

    Every RR treats every other RR as its client (distinct cluster IDs, domain.md
    section 2), so a route reaches an RR ``t`` over every chain of distinct RRs
    from one of the origin's RRs: ``sum((R-2)!/(R-2-j)!)`` chains from each of
    them, plus the direct one when ``t`` is itself one of them.  A client sums
    its ``k`` RRs; two groups (windows of ``k`` slots on a ring of ``R``) share at
    least ``max(0, 2k - R)`` RRs.  Checked against :mod:`core.bgp.verify.fanout`
    (tests) and against BIRD's route counts (docs/PERFORMANCE.md).
    """
    if rrs <= 1:
        return rrs
    k = min(per_client, rrs)
    chains = sum(math.perm(rrs - 2, j) for j in range(rrs - 1))
    shared = max(0, 2 * k - rrs)
    return shared * (1 + (k - 1) * chains) + (k - shared) * k * chains


def routes_over_budget(nodes: int, rrs: int, per_client: int) -> int | None:
    """The add-path routes a client would hold (one prefix per node), when that
    passes ``ROUTES_PER_NODE_BUDGET``; None within it."""
    routes = paths_per_prefix(rrs, per_client) * nodes
    return routes if routes > ROUTES_PER_NODE_BUDGET else None


def fanout_warning(nodes: int, rrs: int, per_client: int) -> Degrading | None:
    """A warning when a client's add-path table would pass the budget."""
    routes = routes_over_budget(nodes, rrs, per_client)
    if routes is None:
        return None
    return Degrading(
        f"multi with {rrs} RRs: a client's BIRD can hold up to "
        f"{paths_per_prefix(rrs, per_client):,} paths per prefix (add-path through chains "
        f"of RRs), so up to {routes:,} routes for {nodes} nodes, over the "
        f"{ROUTES_PER_NODE_BUDGET:,} budget: use fewer RRs (--rrs) or the hierarchy "
        "topology (docs/TOPOLOGIES.md)"
    )


def build(view: ClusterView, config: PlanConfig, rrs: int) -> Layout:
    slots = tuple(
        Slot(f"r{i}", "rr", cluster_id(config.cluster_id_base, i + 1), zone)
        for i, zone in enumerate(slot_zones(view, config, round_to_zones(view, rrs)))
    )
    draft = Draft.filled(view, slots, config)
    count = len(slots)
    red = min(config.redundancy, count)
    if count <= red:
        group_slots = [list(slots)]
    else:
        group_slots = [[slots[(g + j) % count] for j in range(red)] for g in range(count)]
    groups = [f"g{i}" for i in range(len(group_slots))]

    clients = clients_of(view, draft.holders)
    chosen = assign_groups(clients, groups, allowed=zone_allowed(view, group_slots))
    for name, group in chosen.items():
        draft.labels[name] = {GROUP_LABEL: group}

    draft.rules.append(RR_MESH)
    for group, members in zip(groups, group_slots, strict=True):
        draft.group_rule(f"calico-rr-{group}", GROUP_LABEL, group, members)
    warning = fanout_warning(len(view.nodes), count, red)
    if warning is not None:
        draft.warnings.append(warning)
    return draft.layout(NAME, red, {"cluster_ids": count, "groups": len(groups)})
