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

from calico_rr.core.config import (
    GENERATED_RACK_LABEL,
    GROUP_LABEL,
    ROLE_LABEL,
    PlanConfig,
    cluster_id,
)
from calico_rr.core.topologies.base import (
    ClusterView,
    Layout,
    PeerRule,
    Slot,
    clients_of,
    fill,
    label_value,
    rr_labels,
    slot_selector,
)
from calico_rr.model import Node

NAME = "hierarchy"

#: Rack cluster IDs are spread over this many values after the spine's (base + 1).
_ID_SPACE = 1 << 20


def generated_racks(view: ClusterView, config: PlanConfig) -> int:
    """How many racks to generate for nodes without a rack label."""
    if config.racks is not None:
        return config.racks
    unlabelled = sum(
        1 for n in view.nodes if n.ip is not None and config.rack_label not in n.labels
    )
    per_rack = max(1, config.session_budget - config.spines)
    return max(1, math.ceil(unlabelled / per_rack))


def assign_racks(view: ClusterView, config: PlanConfig) -> tuple[dict[str, str], dict[str, str]]:
    """(node -> rack, node -> generated rack label to write).

    The rack label wins.  A node without one keeps the generated rack it was
    given before (stability); new ones go to the least-populated generated rack
    of their zone (generated rack k lives in zone k mod Z, like a real rack).
    """
    rack_of: dict[str, str] = {}
    generated: dict[str, str] = {}
    k = generated_racks(view, config)
    gen_names = [f"g{i:03d}" for i in range(k)]
    gen_zone = {name: (view.zones[i % len(view.zones)] if view.zones else None)
                for i, name in enumerate(gen_names)}
    gen_load = dict.fromkeys(gen_names, 0)
    pending: list[Node] = []
    for n in view.nodes:
        if n.ip is None:
            continue
        rack = n.labels.get(config.rack_label)
        if rack is not None:
            rack_of[n.name] = rack
            continue
        current = n.labels.get(GENERATED_RACK_LABEL)
        if current in gen_load:
            rack_of[n.name] = current
            generated[n.name] = current
            gen_load[current] += 1
        else:
            pending.append(n)
    for n in pending:
        z = view.zone_of.get(n.name)
        options = [g for g in gen_names if gen_zone[g] == z] or gen_names
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


def build(view: ClusterView, config: PlanConfig, rrs: int) -> Layout:
    del rrs  # the hierarchy is sized by racks x redundancy + spines
    rack_of, generated = assign_racks(view, config)
    racks = sorted(set(rack_of.values()))
    ids = rack_cluster_ids(racks, config)
    eligible_in: dict[str, int] = dict.fromkeys(racks, 0)
    for n in view.eligible:
        r = rack_of.get(n.name)
        if r is not None:
            eligible_in[r] += 1

    slots: list[Slot] = []
    rack_slots: dict[str, list[Slot]] = {}
    for rack in racks:
        count = min(config.redundancy, eligible_in[rack]) or 1
        group = label_value(rack)
        rack_slots[rack] = [
            Slot(label_value(f"{group}.{j}"), "rack-rr", ids[rack], None, rack)
            for j in range(count)
        ]
        slots.extend(rack_slots[rack])
    spine_id = cluster_id(config.cluster_id_base, 1)
    spine_zones = [view.zones[i % len(view.zones)] if view.zones else None
                   for i in range(config.spines)]
    spines = [Slot(f"spine.{j}", "spine", spine_id, z) for j, z in enumerate(spine_zones)]
    slots.extend(spines)

    holders, warnings = fill(view, slots, config, rack_of=rack_of)
    # Rack RRs within a rack should span zones when the rack does: fill_slots keeps
    # the order stable; zone balance inside a rack follows from the candidates' order.
    by_id = {s.id: s for s in slots}
    labels: dict[str, dict[str, str]] = {
        node: rr_labels(by_id[slot]) for slot, node in holders.items()
    }
    for node in clients_of(view, holders):
        entry = {GROUP_LABEL: label_value(rack_of[node.name])}
        labels[node.name] = entry
    for node, rack in generated.items():
        labels.setdefault(node, {})[GENERATED_RACK_LABEL] = rack

    rules: list[PeerRule] = []
    for rack in racks:
        group = label_value(rack)
        rules.append(
            PeerRule(
                label_value(f"calico-rr-rack-{group}"),
                f"{GROUP_LABEL} == '{group}'",
                slot_selector([s.id for s in rack_slots[rack]]),
            )
        )
    spine_filled = any(s.id in holders for s in spines)
    if spine_filled:
        rules.append(
            PeerRule("calico-rr-rack-to-spine", f"{ROLE_LABEL} == 'rack-rr'",
                     f"{ROLE_LABEL} == 'spine'")
        )
        rules.append(
            PeerRule("calico-rr-spine-mesh", f"{ROLE_LABEL} == 'spine'",
                     f"{ROLE_LABEL} == 'spine'")
        )
    else:
        warnings.append("no node left for a spine RR: rack RRs peer with each other")
        rules.append(
            PeerRule("calico-rr-rack-rr-mesh", f"{ROLE_LABEL} == 'rack-rr'",
                     f"{ROLE_LABEL} == 'rack-rr'")
        )
    return Layout(
        topology=NAME,
        slots=tuple(slots),
        holders=holders,
        node_labels=labels,
        rules=tuple(rules),
        redundancy=min(config.redundancy, max((len(v) for v in rack_slots.values()), default=0)),
        warnings=tuple(warnings),
        shape={
            "racks": len(racks),
            "spines": sum(1 for s in spines if s.id in holders),
            "cluster_ids": len(racks) + (1 if spine_filled else 0),
        },
    )

