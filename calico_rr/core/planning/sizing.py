"""How many route reflectors (domain.md section 5).

Two calculators - linear and stepping - plus the split of a count over zones.
Every result is clamped to the nodes that can actually be route reflectors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from calico_rr.core.planning.config import LinearSizing, PlanConfig, Sizing, SteppingSizing


def rr_count(nodes: int, sizing: Sizing) -> int:
    """RRs wanted for a cluster (or zone) of ``nodes`` ready nodes, before clamping.

    Linear: ``ceil(nodes * ratio)`` clamped to ``[minimum, maximum]`` - at ratio
    0.005: 1 -> 3, 200 -> 3, 1000 -> 5, 5000 -> 25 (domain.md 5).  Stepping: the
    first step whose ``up_to`` covers ``nodes``; above the last step, the last
    step's count.
    """
    if isinstance(sizing, LinearSizing):
        # round() first: 1000 * 0.005 is 5.000000000000001 in binary floating point.
        wanted = math.ceil(round(nodes * sizing.ratio, 9))
        return max(sizing.minimum, min(sizing.maximum, wanted))
    assert isinstance(sizing, SteppingSizing)
    for step in sizing.steps:
        if nodes <= step.up_to:
            return step.rrs
    return sizing.steps[-1].rrs


def zone_slots(
    total: int | None,
    ready_by_zone: Mapping[str, int],
    eligible_by_zone: Mapping[str, int],
    config: PlanConfig,
) -> list[str]:
    """Home zone of each RR slot, interleaved (``a b c a b c ...``).

    ``total`` is the cluster-wide count (None: size per zone from ``ready_by_zone``,
    used with ``per_zone_sizing``).  A zone never gets more slots than it has
    eligible nodes; the surplus spills to the next zone in name order that has
    room (domain.md 6: "place the missing RRs in the next zone").  The result is
    clamped to the eligible nodes of all zones together.
    """
    zones = sorted(ready_by_zone)
    if not zones:
        return []
    if total is None:
        want = {z: rr_count(ready_by_zone[z], config.sizing) for z in zones}
    else:
        # Even split, remainder to the zones with the most ready nodes (then name).
        base, extra = divmod(total, len(zones))
        by_size = sorted(zones, key=lambda z: (-ready_by_zone[z], z))
        want = {z: base + (1 if i < extra else 0) for i, z in enumerate(by_size)}
    room = {z: eligible_by_zone.get(z, 0) for z in zones}
    got = {z: min(want[z], room[z]) for z in zones}
    surplus = sum(want.values()) - sum(got.values())
    # Spill-over: walk the zones cyclically starting after each short zone.
    for i, z in enumerate(zones):
        missing = want[z] - got[z]
        j = 1
        while missing > 0 and surplus > 0 and j < len(zones):
            nxt = zones[(i + j) % len(zones)]
            if got[nxt] < room[nxt]:
                got[nxt] += 1
                missing -= 1
                surplus -= 1
            else:
                j += 1
    return interleave(got, zones)


def interleave(counts: Mapping[str, int], order: Sequence[str]) -> list[str]:
    """``{a: 2, b: 1, c: 2}`` -> ``[a, b, c, a, c]``: consecutive slots in distinct zones."""
    left = dict(counts)
    out: list[str] = []
    while any(left.values()):
        for z in order:
            if left.get(z, 0) > 0:
                out.append(z)
                left[z] -= 1
    return out
