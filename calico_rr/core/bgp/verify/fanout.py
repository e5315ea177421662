"""Add-path fan-out: how many paths each node holds for one prefix.

calico-node's BIRD template turns ``add paths on`` for every session (domain.md
section 2), so a speaker sends every path it holds for a prefix, not only its
best, and its peers keep each one.  The reflection rules of :mod:`.rules` bound
where a path can go, but not how many distinct paths arrive: in a mesh of RRs
with distinct cluster IDs (multi cluster, quorum with several groups) a route can
travel any chain of RRs whose IDs are not yet on its CLUSTER_LIST, and every
chain is a path of its own.  The count then grows factorially with the number of
cluster IDs; BIRD's memory and its UPDATE traffic grow with it.

Measured on BIRD 1.6.8 (``calico-rr lab --scale --nodes 40 --topology multi
--zones 1 --rrs R``, docs/PERFORMANCE.md): each RR's route count equalled this
count, summed over every prefix, plus 2 (449 / 1431 / 5869 routes for R = 4 / 5 / 6).

:func:`path_counts` counts without listing the paths (:func:`.exact.paths` lists
them): the number of paths reaching a state (holder, sender, CLUSTER_LIST,
AS_PATH) is all that decides where they go next, and every export strictly grows
:func:`.rules.order_key`, so states taken in key order are final when taken.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.bgp.verify.exact import node_view
from calico_rr.core.bgp.verify.rules import Arrival, accepts, export_path, may_export, order_key

#: States (holder, sender, CLUSTER_LIST, AS_PATH) one origin may expand before the
#: count stops and is reported as a lower bound: a multi layout of 27 RRs (5000
#: nodes) gives up after a fraction of a second; what calico-rr plans within
#: :data:`ROUTES_PER_NODE_BUDGET` needs a few hundred states per origin.
MAX_STATES = 5_000

#: Add-path routes (paths, all prefixes together) one node's BIRD may hold before
#: calico-rr warns, and ``auto`` leaves a layout out.  Measured on BIRD 1.6.8
#: (docs/PERFORMANCE.md): a daemon's RSS is about 2.5 MB plus 0.5 KB per path
#: (2.97 MB at 1,311 paths, 11.3 MB at 17,200); the 1000-node hierarchy's clients
#: held ~20,000 paths in 12.4 MB, a 5000-node hierarchy's hold ~135,000.  200,000
#: paths are ~100 MB per node, on every node of the cluster.
ROUTES_PER_NODE_BUDGET = 200_000

_State = tuple[int, int, int, int]  # holder, sender, CLUSTER_LIST bits, AS_PATH bits


@dataclass(frozen=True, slots=True)
class FanOut:
    """The add-path table: most paths one node holds for one prefix, and per node."""

    #: most paths one node holds for one prefix
    paths_per_prefix: int
    holder: str
    origin: str
    #: most paths one node holds for all prefixes together, estimated from one
    #: origin per class (members of a class send the same paths)
    routes_per_node: int
    #: counting stopped early (``limit`` or :data:`MAX_STATES`): both are lower bounds
    at_least: bool

    @property
    def over_budget(self) -> bool:
        return self.routes_per_node > ROUTES_PER_NODE_BUDGET

    @property
    def warns(self) -> bool:
        """Over the budget, or counted only in part (a lower bound): worth a warning."""
        return self.over_budget or self.at_least

    def describe(self) -> str:
        """The busiest node's table in words, and the budget when it is passed."""
        more = "at least " if self.at_least else "about "
        text = (
            f"{self.holder}'s BIRD would hold {more}{self.routes_per_node:,} add-path "
            f"routes (up to {more}{self.paths_per_prefix:,} paths per prefix)"
        )
        if self.over_budget:
            text += f", over the {ROUTES_PER_NODE_BUDGET:,} budget"
        elif self.at_least:
            text += (
                f"; the count stopped at {MAX_STATES:,} states for one origin (layouts "
                f"within the {ROUTES_PER_NODE_BUDGET:,} budget need a few hundred)"
            )
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "paths_per_prefix": self.paths_per_prefix,
            "holder": self.holder,
            "origin": self.origin,
            "routes_per_node": self.routes_per_node,
            "at_least": self.at_least,
            "budget": ROUTES_PER_NODE_BUDGET,
        }


class _Counter:
    """The graph prepared once for counting from many origins."""

    def __init__(self, graph: SessionGraph) -> None:
        self.view = view = node_view(graph)
        self.size = len(graph.nodes)
        #: per node, per peer group: the peers that may pass a path on (the rest
        #: only hold it, and are counted per group, not one by one)
        self.movers: list[list[tuple[int, ...]]] = [
            [
                tuple(
                    v
                    for v in peers
                    if view.has_ebgp[v]
                    or back is Arrival.EBGP
                    or (peer_cb and (back is Arrival.RR_CLIENT or view.has_client[v]))
                )
                for _, back, peer_cb, _, peers in view.groups[x]
            ]
            for x in range(self.size)
        ]
        #: per node: the group each peer is in
        self.group_of: list[dict[int, int]] = [
            {v: gi for gi, group in enumerate(view.groups[x]) for v in group[4]}
            for x in range(self.size)
        ]

    def counts(self, origin: int, limit: int | None) -> tuple[list[int], bool]:
        view = self.view
        #: paths each (sender, peer group) passed on: every member holds them
        per_group: dict[tuple[int, int], int] = {}
        counts = [0] * self.size  # here: corrections (never back to the sender)
        pending: dict[_State, int] = {(origin, -1, 0, 0): 1}
        work: list[tuple[tuple[int, int, int], _State]] = [((0, 0, 0), (origin, -1, 0, 0))]
        stopped = False
        expanded = 0
        while work and not stopped:
            expanded += 1
            _, state = heapq.heappop(work)
            x, w, cl, asp = state
            many = pending.pop(state)
            held = Arrival.ORIGIN if w < 0 else view.kind[x][w]
            for gi, (out, back, peer_cb, peer_ab, _) in enumerate(view.groups[x]):
                sent = export_path(held, cl, asp, out, view.cluster_bit[x], view.asn_bit[x])
                if sent is None or not accepts(sent[0], sent[1], back, peer_cb, peer_ab):
                    continue
                total = per_group[x, gi] = per_group.get((x, gi), 0) + many
                if w >= 0 and self.group_of[x][w] == gi:
                    counts[w] -= many
                stopped = stopped or (limit is not None and total > limit)
                for v in self.movers[x][gi]:
                    if v not in (w, origin) and may_export(
                        back, sent[0], peer_cb, view.has_client[v], view.has_ebgp[v]
                    ):
                        nxt = (v, x, sent[0], sent[1])
                        if nxt not in pending:
                            pending[nxt] = 0
                            heapq.heappush(work, (order_key(back, sent[0], sent[1]), nxt))
                        pending[nxt] += many
            stopped = stopped or (expanded >= MAX_STATES and bool(work))
        for (x, gi), total in per_group.items():
            for v in view.groups[x][gi][4]:
                counts[v] += total
        counts[origin] = 0  # the origin drops its own prefix (ORIGINATOR_ID)
        return counts, stopped


def path_counts(
    graph: SessionGraph, origin: int, *, limit: int | None = None
) -> tuple[list[int], bool]:
    """Paths each node holds for ``origin``'s prefix; True when counting stopped
    early (more than ``limit`` paths for some node, or :data:`MAX_STATES`), and
    the counts are then lower bounds."""
    return _Counter(graph).counts(origin, limit)


def reflected_fanout(graph: SessionGraph) -> FanOut | None:
    """:func:`fanout` up to the budget, where routes can chain through reflectors:
    under two or more cluster IDs (None under fewer).  Under one, a client holds
    one path per RR it peers with, and the count would add only time (0.4 s at
    5000 nodes).  What ``plan``, ``verify`` and ``doctor`` report."""
    if len({n.cluster_id for n in graph.nodes if n.cluster_id is not None}) < 2:
        return None
    return fanout(graph, limit=ROUTES_PER_NODE_BUDGET)


def fanout(graph: SessionGraph, *, limit: int | None = None) -> FanOut | None:
    """The add-path table of ``graph``'s busiest node (None: no node).

    Nodes of one class (same peers, cluster ID and AS) hold the same counts for
    one origin, so one origin per class is counted, weighted by the class's size.
    Stops at the first origin that gives more than ``limit`` paths to some node,
    or once some node's table passes ``limit``.
    """
    if not graph.nodes:
        return None
    counter = _Counter(graph)
    names = [n.name for n in graph.nodes]
    routes = [0] * len(graph.nodes)
    best = (0, 0, 0)  # paths, holder, origin
    stopped = False
    for cls in graph.classes:
        if not cls.members:
            continue
        origin = cls.members[0]
        counts, stopped = counter.counts(origin, limit)
        size = len(cls.members)
        for v, c in enumerate(counts):
            routes[v] += c * size
        if size > 1:  # a member holds its mates' prefixes, not its own
            mate = counts[cls.members[1]]
            for v in cls.members:
                routes[v] += mate * (size - 1) - counts[v] * size
        holder = max(range(len(counts)), key=counts.__getitem__)
        if counts[holder] > best[0]:
            best = (counts[holder], holder, origin)
        stopped = stopped or (limit is not None and max(routes) > limit)
        if stopped:
            break
    return FanOut(best[0], names[best[1]], names[best[2]], max(routes), stopped)
