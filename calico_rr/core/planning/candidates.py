"""Which nodes may be route reflectors, and which ones are (domain.md section 6).

Eligibility is a pure predicate on one node.  Filling RR *slots* (see
``topologies.base``) keeps every current holder that is still eligible - the
planner's state lives in node labels, so re-planning is stable - and fills
empty slots with the best candidate: in the slot's home zone (spilling to the
next zone), preferred label first, then the oldest node (more likely to stay),
then the name, so the result is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from calico_rr.core.bgp.families import Family, families_of_nodes, missing_families
from calico_rr.core.planning.config import SLOT_LABEL, PlanConfig
from calico_rr.model import Condition, Node

#: Taints that mean "this node is not (or soon not) healthy" (domain.md 6).
#: Kubernetes' node lifecycle controller and kubelet set these.
UNHEALTHY_TAINTS = frozenset(
    {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/network-unavailable",
        "node.kubernetes.io/unschedulable",
        "node.cloudprovider.kubernetes.io/uninitialized",
        "node.cloudprovider.kubernetes.io/shutdown",
    }
)

_PRESSURE = (
    Condition.MEMORY_PRESSURE.value,
    Condition.DISK_PRESSURE.value,
    Condition.PID_PRESSURE.value,
    Condition.NETWORK_UNAVAILABLE.value,
)


def label_matches(labels: Mapping[str, str], spec: str) -> bool:
    """The three match forms of the incompatible/preferred label lists (domain.md 6).

    ``key=value``: exact value; ``key=``: present with an empty value; ``key``: present.
    """
    if "=" in spec:
        key, value = spec.split("=", 1)
        return labels.get(key) == value
    return spec in labels


def healthy(node: Node) -> bool:
    """Ready, schedulable, not being deleted, no pressure or unhealthy taint."""
    return _unhealthy(node) is None


def ineligibility(node: Node, config: PlanConfig) -> str | None:
    """Why ``node`` may not be a route reflector, or None when it may."""
    if not node.addressed:
        return "no BGP address"
    unhealthy = _unhealthy(node)
    if unhealthy is not None:
        return unhealthy
    for spec in config.incompatible_labels:
        if label_matches(node.labels, spec):
            return f"incompatible label {spec}"
    if config.dedicated_label and not label_matches(node.labels, config.dedicated_label):
        return f"not a dedicated RR node ({config.dedicated_label})"
    return None


def _unhealthy(node: Node) -> str | None:
    """Why ``node`` is not healthy, or None when it is."""
    if not node.ready:
        return "not Ready"
    if node.unschedulable:
        return "cordoned"
    if node.deleting:
        return "being deleted"
    for cond in _PRESSURE:
        if node.conditions.get(cond) == "True":
            return cond
    for taint in node.taints:
        if taint.key in UNHEALTHY_TAINTS:
            return f"taint {taint.key}"
    return None


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """A slot to fill: its id, home zone and (hierarchy) the rack it must come from."""

    slot: str
    zone: str | None
    rack: str | None = None


def fill_slots(
    requests: Sequence[SlotRequest],
    eligible: Sequence[Node],
    *,
    zone_of: Mapping[str, str | None],
    rack_of: Mapping[str, str] | None,
    config: PlanConfig,
    zone_order: Sequence[str],
    families: Sequence[Family] = (),
) -> tuple[dict[str, str], list[str]]:
    """Assign a node name to each slot.  Returns (slot -> node, warnings).

    ``families``: the address families the cluster uses (default: those of
    ``eligible``).  An RR without an address of one of them has no sessions of
    that family, so its clients lose those routes: nodes carrying every family
    (*complete*) come first, in every step.

    1. Keep: a node already labelled with a requested slot keeps it while it is
       eligible, (for rack slots) still in that rack, and complete or no complete
       candidate exists.  If several nodes claim a slot (a make-before-break
       hand-over in progress) the oldest keeps it.
    2. Fill: each empty slot, in request order, takes the best free complete
       candidate in its rack (hierarchy) and home zone, spilling to the next zones
       in order, then to other racks; only then an incomplete one (with a warning).
    """
    wanted = {r.slot: r for r in requests}
    taken: dict[str, str] = {}
    used: set[str] = set()
    warnings: list[str] = []
    need = tuple(families) or families_of_nodes(eligible)
    complete = {n.name for n in eligible if not missing_families(n, need)}

    # 1. Keep current holders (oldest first so a duplicate claim resolves stably).
    for node in sorted(eligible, key=lambda n: (n.created, n.name)):
        slot = node.labels.get(SLOT_LABEL)
        if slot is None or slot not in wanted or slot in taken:
            continue
        if complete and node.name not in complete:
            continue  # re-chosen below only when the complete candidates run out
        req = wanted[slot]
        if req.rack is not None and rack_of is not None and rack_of.get(node.name) != req.rack:
            continue
        taken[slot] = node.name
        used.add(node.name)

    # 2. Fill the rest.  Candidates are ranked once and bucketed by (rack, zone);
    #    at most a few hundred slots exist, so skipping used names stays cheap
    #    even at 50,000 nodes.
    ranked = sorted(eligible, key=lambda n: _rank_key(n, config))
    tiers: list[_Buckets] = [{}, {}]  # complete candidates, then the others
    for n in ranked:
        buckets = tiers[0 if n.name in complete else 1]
        rack = rack_of.get(n.name) if rack_of is not None else None
        buckets.setdefault((rack, zone_of.get(n.name)), []).append(n)
        if rack is not None:
            buckets.setdefault((None, zone_of.get(n.name)), []).append(n)
    zones = list(zone_order)
    for req in requests:
        if req.slot in taken:
            continue
        choice, other_rack = _pick_tiered(tiers, req, zones, used)
        if other_rack:
            warnings.append(
                f"rack {req.rack} has no eligible node for slot {req.slot}; "
                "taking one from another rack"
            )
        if choice is None:
            warnings.append(Degrading(f"no eligible node left for RR slot {req.slot}"))
            continue
        if req.zone is not None and zone_of.get(choice.name) != req.zone:
            warnings.append(
                f"zone {req.zone} has no eligible node for slot {req.slot}; "
                f"using {choice.name} in zone {zone_of.get(choice.name)}"
            )
        warnings.extend(_lacking_warning(choice, req.slot, need))
        taken[req.slot] = choice.name
        used.add(choice.name)
    return taken, warnings


_Buckets = dict[tuple[str | None, str | None], list[Node]]


class Degrading(str):
    """A planner warning after which the layout misses part of what it is for: RRs
    short (a slot no node can hold), an RR without an address family its clients
    use, or clients' add-path tables over the budget.  The operator reports such a
    layout as Degraded (adapters/controller.py).  It prints and compares as its
    text; the kind travels with the warning rather than being read from its words."""

    __slots__ = ()


#: In the warning of an RR without an address of a family the cluster uses.
FAMILY_GAP = "no eligible node with every address family"


def _lacking_warning(choice: Node, slot: str, need: Sequence[Family]) -> list[str]:
    """Say when an RR lacks a family the cluster uses (only when no complete
    candidate was left: :func:`fill_slots`)."""
    lacking = missing_families(choice, tuple(need))
    if not lacking:
        return []
    names = " and ".join("IPv6" if f == "ipv6" else "IPv4" for f in lacking)
    return [
        Degrading(
            f"RR {choice.name} (slot {slot}) has no {names} address: {FAMILY_GAP} "
            f"({', '.join(need)}) is left, so its clients get no {names} routes through it"
        )
    ]


def _pick_tiered(
    tiers: Sequence[_Buckets], req: SlotRequest, zones: Sequence[str], used: set[str]
) -> tuple[Node | None, bool]:
    """The best free candidate for ``req``: the first tier's (rack first, then any
    rack), then the next tier's.  The flag: a rack slot filled outside its rack."""
    for buckets in tiers:
        if req.rack is not None:
            choice = _pick(buckets, req.rack, req.zone, zones, used)
            if choice is not None:
                return choice, False
        choice = _pick(buckets, None, req.zone, zones, used)
        if choice is not None:
            return choice, req.rack is not None
    return None, False


def _pick(
    buckets: Mapping[tuple[str | None, str | None], Sequence[Node]],
    rack: str | None,
    zone: str | None,
    zones: Sequence[str],
    used: set[str],
) -> Node | None:
    """Best unused candidate of ``rack`` (None: any), home zone first, then the next zones."""
    order: list[str | None]
    if zone is not None and zone in zones:
        start = zones.index(zone)
        order = [zones[(start + i) % len(zones)] for i in range(len(zones))]
    else:
        order = list(zones)
    # Nodes without a zone label (or when zones are not used) come last.
    order.append(None)
    for z in order:
        for n in buckets.get((rack, z), ()):
            if n.name not in used:
                return n
    return None


def _rank_key(node: Node, config: PlanConfig) -> tuple[int, float, str]:
    preferred = bool(config.preferred_label) and label_matches(
        node.labels, config.preferred_label or ""
    )
    return (0 if preferred else 1, node.created, node.name)
