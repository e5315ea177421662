"""Hierarchy (domain.md 4): rack RRs under a spine layer, like a data centre.

Good for about 2000-5000+ nodes.  Nodes belong to racks (the rack label, or a
rack the planner generates and records in ``calico-rr.io/generated-rack``).

* Each rack has ``redundancy`` rack RRs under the rack's own cluster ID; every
  client of the rack peers with all of them (a single cluster per rack, so two
  clients of one rack always share an RR - lab A).
* Spine RRs share one cluster ID and peer with each other as plain iBGP.
* Every rack RR peers with every spine: different IDs, so each side treats the
  other as a client and routes climb to the spines and down into other racks
  (lab B: every node learns every prefix, CLUSTER_LIST {S, X, Y}).
* No session between rack RRs of different racks, none between rack mates (a
  rack mate's own prefix comes back through the spines).  Should no spine
  exist at all (tiny clusters), rack RRs peer with each other instead.

5000 nodes, 10 racks: 30 rack RRs + 3 spines = 33 RRs, ~497 clients + 3 spines
= ~500 sessions per rack RR.  BGPPeers: one per rack + 2.
The spines' reflections back to other spines are dropped there (own ID in the
CLUSTER_LIST): wasted UPDATEs the verifier counts.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from calico_rr.core.planning.candidates import Degrading
from calico_rr.core.planning.config import (
    GENERATED_RACK_LABEL,
    GROUP_LABEL,
    ROLE_LABEL,
    SLOT_LABEL,
    PlanConfig,
    cluster_id,
)
from calico_rr.core.planning.topologies.base import (
    ClusterView,
    Draft,
    Layout,
    PeerRule,
    Slot,
    clients_of,
    fill,
    label_value,
)
from calico_rr.model import Node

NAME = "hierarchy"

#: Rack cluster IDs are spread over this many values after the spine's (base + 1).
_ID_SPACE = 1 << 20


def generated_racks(view: ClusterView, config: PlanConfig) -> dict[str | None, list[str]]:
    """Generated rack names per zone, for nodes without a rack label.

    A generated rack lives in one zone, like a real one.  Each zone gets racks in
    proportion to its unlabelled nodes: ``--racks`` split over the zones (largest
    remainder, at least one per zone), or enough racks that a rack RR stays
    within the session budget (``budget - spines`` clients per rack).
    """
    unlabelled: dict[str | None, int] = {}
    for n in view.nodes:
        if n.addressed and config.rack_label not in n.labels:
            z = view.zone_of.get(n.name)
            unlabelled[z] = unlabelled.get(z, 0) + 1
    if not unlabelled:
        return {}
    zones = sorted(unlabelled, key=lambda z: z or "")
    per_rack = max(1, config.session_budget - config.spines)
    if config.racks is None:
        count = {z: max(1, math.ceil(unlabelled[z] / per_rack)) for z in zones}
    else:
        total = sum(unlabelled.values())
        share = {z: config.racks * unlabelled[z] / total for z in zones}
        count = {z: max(1, math.floor(share[z])) for z in zones}
        left = config.racks - sum(count.values())
        for z in sorted(zones, key=lambda z: (count[z] - share[z], z or ""))[: max(0, left)]:
            count[z] += 1
    return {
        z: [label_value(f"{z}-g{i:02d}" if z else f"g{i:03d}") for i in range(count[z])]
        for z in zones
    }


def assign_racks(view: ClusterView, config: PlanConfig) -> tuple[dict[str, str], dict[str, str]]:
    """(node -> rack, node -> generated rack label to write).

    The rack label wins.  A node without one keeps the generated rack it was
    given before while that rack still exists in its zone (stability); new ones
    go to the least-populated generated rack of their zone.
    """
    rack_of: dict[str, str] = {}
    generated: dict[str, str] = {}
    by_zone = generated_racks(view, config)
    gen_load = {g: 0 for names in by_zone.values() for g in names}
    pending: list[Node] = []
    for n in view.nodes:
        if not n.addressed:
            continue
        rack = n.labels.get(config.rack_label)
        if rack is not None:
            rack_of[n.name] = rack
            continue
        current = n.labels.get(GENERATED_RACK_LABEL)
        if current in by_zone.get(view.zone_of.get(n.name), ()):
            assert current is not None
            rack_of[n.name] = current
            generated[n.name] = current
            gen_load[current] += 1
        else:
            pending.append(n)
    for n in pending:
        options = by_zone[view.zone_of.get(n.name)]
        best = min(options, key=lambda g: (gen_load[g], g))
        gen_load[best] += 1
        rack_of[n.name] = best
        generated[n.name] = best
    return rack_of, generated


def rack_cluster_ids(racks: list[str], config: PlanConfig) -> dict[str, str]:
    """A cluster ID per rack that depends on the rack's name, not on the other racks
    (adding a rack must not renumber - a cluster ID change resets sessions).
    Collisions are resolved by probing, in rack-name order."""
    used = {1}  # base + 1 is the spines'
    out: dict[str, str] = {}
    for rack in sorted(racks):
        n = 2 + int(hashlib.sha1(rack.encode()).hexdigest(), 16) % _ID_SPACE
        while n in used:
            n = 2 + (n - 1) % _ID_SPACE
        used.add(n)
        out[rack] = cluster_id(config.cluster_id_base, n)
    return out


def _majority_zone(view: ClusterView, rack_of: dict[str, str], rack: str) -> str | None:
    counts = Counter(view.zone_of.get(name) for name, r in rack_of.items() if r == rack)
    return max(counts, key=lambda z: (counts[z], z or "")) if counts else None


def build(view: ClusterView, config: PlanConfig, rrs: int) -> Layout:
    del rrs  # the hierarchy is sized by racks x redundancy + spines
    rack_of, generated = assign_racks(view, config)
    racks = sorted(set(rack_of.values()))
    spine_id, zones = cluster_id(config.cluster_id_base, 1), view.zones
    spines = [
        Slot(f"spine.{j}", "spine", spine_id, zones[j % len(zones)] if zones else None)
        for j in range(config.spines)
    ]
    # 1. A spine slot with an eligible holder keeps it (stability); that node is
    #    kept out of the rack RR choice below.
    holders = _kept_spines(view, {s.id for s in spines})

    # 2. Rack RRs: `redundancy` per rack, from the rack's own eligible nodes.
    rack_view = _without(view, holders.values())
    rack_slots = _rack_slots(rack_view, config, racks, rack_of)
    slots = [s for rack in racks for s in rack_slots[rack]]
    rack_holders, warnings = fill(rack_view, slots, config, rack_of=rack_of)
    holders.update(rack_holders)

    # 3. New spines come out of racks and leave those racks with fewer clients
    #    (_place_spines); their holders come from the nodes still free.
    placed = _place_spines(view, spines, holders, racks, rack_of)
    spine_view = _without(view, holders.values())
    spine_holders, spine_warnings = fill(spine_view, placed, config, rack_of=rack_of)
    holders.update(spine_holders)
    warnings.extend(spine_warnings)

    draft = Draft.of([*slots, *spines], holders, warnings)
    for client in clients_of(view, holders):
        draft.labels[client.name] = {GROUP_LABEL: label_value(rack_of[client.name])}
    for name, gen_rack in generated.items():
        draft.labels.setdefault(name, {})[GENERATED_RACK_LABEL] = gen_rack
    spine_filled = any(s.id in holders for s in spines)
    _add_rules(draft, racks, rack_slots, spine_filled=spine_filled)
    return draft.layout(
        NAME,
        redundancy=min(config.redundancy, max((len(v) for v in rack_slots.values()), default=0)),
        shape={
            "racks": len(racks),
            "spines": sum(1 for s in spines if s.id in holders),
            "cluster_ids": len(racks) + (1 if spine_filled else 0),
        },
    )


def _kept_spines(view: ClusterView, spine_ids: set[str]) -> dict[str, str]:
    """Spine slot -> the eligible node labelled with it (the oldest, should two be)."""
    holders: dict[str, str] = {}
    for n in sorted(view.eligible, key=lambda n: (n.created, n.name)):
        slot = n.labels.get(SLOT_LABEL)
        if slot in spine_ids and slot not in holders:
            holders[slot] = n.name
    return holders


def _without(view: ClusterView, taken: Iterable[str]) -> ClusterView:
    """``view`` with the ``taken`` nodes no longer eligible."""
    names = set(taken)
    return replace(view, eligible=tuple(n for n in view.eligible if n.name not in names))


def _rack_slots(
    view: ClusterView, config: PlanConfig, racks: list[str], rack_of: dict[str, str]
) -> dict[str, list[Slot]]:
    """Rack -> its rack RR slots under the rack's cluster ID: ``redundancy`` of
    them, fewer when the rack has fewer eligible nodes (but at least one), and
    no more than :func:`rack_rr_cap` allows for the rack's size."""
    ids = rack_cluster_ids(racks, config)
    eligible_in = Counter(rack_of[n.name] for n in view.eligible)
    size_of = Counter(rack_of.values())
    out: dict[str, list[Slot]] = {}
    for rack in racks:
        count = min(config.redundancy, eligible_in[rack], rack_rr_cap(size_of[rack])) or 1
        group = label_value(rack)
        out[rack] = [
            Slot(label_value(f"{group}.{j}"), "rack-rr", ids[rack], None, rack)
            for j in range(count)
        ]
    return out


def rack_rr_cap(rack_size: int) -> int:
    """The most rack RRs a rack of ``rack_size`` nodes gets: a third of it, but
    two (the single-failure guarantee: a client peers only with its rack's RRs).

    A rack RR exists to spare its clients sessions; with ``redundancy`` 3 a
    5-node rack would be 3 RRs for 2 clients, and a 16-node cluster in 3 zones
    (a generated rack per zone) 12 RRs of 16.  Racks of 9 nodes or more are
    not capped at the default redundancy."""
    return max(2, rack_size // 3)


def _place_spines(
    view: ClusterView,
    spines: list[Slot],
    holders: dict[str, str],
    racks: list[str],
    rack_of: dict[str, str],
) -> list[Slot]:
    """The spine slots still without a holder, each given the rack to take it from.

    A new spine leaves its rack with one client fewer: take it from the rack with
    the most clients left (in the spine's home zone when possible) so rack RRs stay
    within a few sessions of each other.  A spine gets no rack when no rack has a
    free eligible node.
    """
    taken = set(holders.values())
    free_in = Counter(rack_of[n.name] for n in view.eligible if n.name not in taken)
    clients_in = Counter(r for name, r in rack_of.items() if name not in taken)
    rack_zone = {r: _majority_zone(view, rack_of, r) for r in racks}
    placed: list[Slot] = []
    for spine in spines:
        if spine.id in holders:
            continue
        options = [r for r in racks if free_in[r] > 0 and rack_zone[r] == spine.zone]
        options = options or [r for r in racks if free_in[r] > 0]
        home: str | None = None
        if options:
            home = max(options, key=lambda r: (clients_in[r], r))
            free_in[home] -= 1
            clients_in[home] -= 1
        placed.append(replace(spine, rack=home))
    return placed


def _add_rules(
    draft: Draft, racks: list[str], rack_slots: dict[str, list[Slot]], *, spine_filled: bool
) -> None:
    """A BGPPeer per rack (clients to their rack RRs), then the RR layers: rack RRs
    to the spines and a spine mesh, or, with no spine at all, a rack RR mesh."""
    for rack in racks:
        group = label_value(rack)
        name = label_value(f"calico-rr-rack-{group}")
        draft.group_rule(name, GROUP_LABEL, group, rack_slots[rack])
    if spine_filled:
        draft.rules.append(_role_rule("calico-rr-rack-to-spine", "rack-rr", "spine"))
        draft.rules.append(_role_rule("calico-rr-spine-mesh", "spine", "spine"))
    else:
        draft.warnings.append(
            Degrading("no node left for a spine RR: rack RRs peer with each other")
        )
        draft.rules.append(_role_rule("calico-rr-rack-rr-mesh", "rack-rr", "rack-rr"))


def _role_rule(name: str, role: str, peer_role: str) -> PeerRule:
    return PeerRule(name, f"{ROLE_LABEL} == '{role}'", f"{ROLE_LABEL} == '{peer_role}'")
