"""``auto``: pick the topology by cluster size and a per-RR session budget.

The talk sizes the topologies by node count (single ~50-500, multi ~500-2000,
quorum ~1000-2000, hierarchy ~2000-5000+) and the proposal by RR load (an RR
handles ~500 clients comfortably).  We use the budget directly, cheapest shape
first:

1. **single** when every RR can hold every other node: ``nodes - 1 <= budget``;
2. **multi** with the sized RR count, raised up to the sizing maximum if that is
   what it takes, when ``redundancy * clients / RRs + (RRs - 1) <= budget`` and a
   client's add-path table stays within ``ROUTES_PER_NODE_BUDGET``
   (``multi.paths_per_prefix``: it grows factorially with the RR count, so in
   practice multi is picked only with 3-5 RRs);
3. **hierarchy** otherwise (its rack count is derived from the same budget).

Quorum is never picked automatically: at equal RR count its session load equals
multi's, and it is offered for operators who want shared cluster IDs (fewer
distinct IDs, fewer reflected copies inside a group).
"""

from __future__ import annotations

import math

from calico_rr.core.bgp.verify.fanout import ROUTES_PER_NODE_BUDGET
from calico_rr.core.planning.config import LinearSizing, PlanConfig
from calico_rr.core.planning.topologies import multi


def multi_load(nodes: int, rrs: int, redundancy: int) -> int:
    """Sessions on the busiest RR of a balanced multi-cluster layout."""
    red = min(redundancy, rrs)
    return math.ceil(red * (nodes - rrs) / rrs) + (rrs - 1)


def choose(
    nodes: int, eligible: int, sized: int, config: PlanConfig, *, zones: int = 0
) -> tuple[str, int, str]:
    """(topology, RR count, reason).  With zones, multi rounds its RR count up to a
    whole number per zone, so only such counts are tried."""
    budget = config.session_budget
    if nodes - 1 <= budget:
        return (
            "single",
            sized,
            f"{nodes} nodes: every RR can peer with every node ({budget} budget)",
        )
    ceiling = sized
    if config.rrs is None and isinstance(config.sizing, LinearSizing):
        ceiling = max(sized, config.sizing.maximum)
    ceiling = min(ceiling, eligible)
    step = max(1, zones)
    first = -(-max(1, min(sized, ceiling)) // step) * step
    for rrs in range(first, ceiling + 1, step):
        routes = multi.routes_over_budget(nodes, rrs, config.redundancy)
        if routes is not None:  # more RRs only make it worse
            return (
                "hierarchy",
                sized,
                f"multi with {rrs} RRs would put up to {routes:,} add-path routes on a "
                f"node (budget {ROUTES_PER_NODE_BUDGET:,})",
            )
        load = multi_load(nodes, rrs, config.redundancy)
        if load <= budget:
            return "multi", rrs, f"{rrs} RRs with {load} sessions each fit the {budget} budget"
    return (
        "hierarchy",
        sized,
        f"no multi-cluster layout of at most {ceiling} RRs fits the {budget}-session budget",
    )
