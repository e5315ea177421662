"""Session figures measured on a :class:`~calico_rr.core.bgp.sessions.SessionGraph`.

Every number here is read off the graph calico-node would build from the rendered
resources, never from what a planner meant to do, so a rendering mistake shows up
in the figures.  A route reflector is a node with a cluster ID (domain.md section 2);
a "client" is any BGP node without one.

All figures are computed per *class* (members of a class have identical peerings,
so identical degrees) and weighted by class size: O(classes^2), independent of the
number of sessions, so the 12.5 million sessions of a 5000-node mesh cost nothing.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from calico_rr.core.bgp.sessions import SessionGraph


@dataclass(frozen=True, slots=True)
class Stats:
    """Minimum, mean (rounded to 2 decimals) and maximum; all 0 for no values."""

    min: int = 0
    mean: float = 0.0
    max: int = 0

    @classmethod
    def of(cls, values: Iterable[int]) -> Stats:
        return weighted((v, 1) for v in values)

    def to_dict(self) -> dict[str, int | float]:
        return {"min": self.min, "mean": self.mean, "max": self.max}


def weighted(pairs: Iterable[tuple[int, int]]) -> Stats:
    """Stats of a multiset given as (value, multiplicity) pairs (no expansion: meshes are huge)."""
    kept = [(value, weight) for value, weight in pairs if weight > 0]
    if not kept:
        return Stats()
    count = sum(weight for _, weight in kept)
    mean = round(sum(value * weight for value, weight in kept) / count, 2)
    return Stats(min=min(v for v, _ in kept), mean=mean, max=max(v for v, _ in kept))


@dataclass(frozen=True, slots=True)
class SessionMetrics:
    nodes: int  # BGP nodes (nodes with an IPv4 address)
    route_reflectors: int  # nodes with a cluster ID
    cluster_ids: int  # distinct cluster IDs
    total_sessions: int
    bgppeer_objects: int
    sessions_per_rr: Stats
    clients_per_rr: Stats  # peers of an RR that are not RRs
    rr_peers_per_rr: Stats  # peers of an RR that are RRs
    sessions_per_client: Stats
    #: Non-RR nodes with no RR peer, counted only when the cluster has RRs (with no
    #: RR at all, e.g. a plain mesh, nobody is "without" one).
    clients_without_rr: int
    #: Name of the node with the most sessions (first by name on a tie); None if no node.
    max_sessions_node: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def class_counts(graph: SessionGraph) -> list[tuple[int, int]]:
    """Per class: (RR peers, non-RR peers) of one member."""
    out: list[tuple[int, int]] = []
    for c, row in enumerate(graph.adj):
        rr = plain = 0
        for d in row:
            other = graph.classes[d]
            size = len(other.members) - (1 if d == c else 0)  # never counts itself
            if other.cluster_id is not None:
                rr += size
            else:
                plain += size
        out.append((rr, plain))
    return out


def session_metrics(graph: SessionGraph, *, bgppeer_objects: int) -> SessionMetrics:
    """Figures for a plan summary; ``bgppeer_objects`` is the number of BGPPeers rendered."""
    counts = class_counts(graph)
    rr_classes = [c for c, cls in enumerate(graph.classes) if cls.cluster_id is not None]
    plain_classes = [c for c, cls in enumerate(graph.classes) if cls.cluster_id is None]
    sizes = [len(cls.members) for cls in graph.classes]
    n_rr = sum(sizes[c] for c in rr_classes)

    # (-degree, first member index): the most sessions, then the first by name
    busiest = min(
        (
            (-(rr + plain), graph.classes[c].members[0])
            for c, (rr, plain) in enumerate(counts)
            if sizes[c]
        ),
        default=None,
    )

    without_rr = sum(sizes[c] for c in plain_classes if counts[c][0] == 0) if n_rr else 0

    return SessionMetrics(
        nodes=len(graph.nodes),
        route_reflectors=n_rr,
        cluster_ids=len({cls.cluster_id for cls in graph.classes if cls.cluster_id is not None}),
        total_sessions=graph.total_sessions(),
        bgppeer_objects=bgppeer_objects,
        sessions_per_rr=weighted((sum(counts[c]), sizes[c]) for c in rr_classes),
        clients_per_rr=weighted((counts[c][1], sizes[c]) for c in rr_classes),
        rr_peers_per_rr=weighted((counts[c][0], sizes[c]) for c in rr_classes),
        sessions_per_client=weighted((sum(counts[c]), sizes[c]) for c in plain_classes),
        clients_without_rr=without_rr,
        max_sessions_node=graph.nodes[busiest[1]].name if busiest is not None else None,
    )


def sessions_by_label(graph: SessionGraph, key: str) -> dict[str, Stats]:
    """Degree stats of the RRs grouped by their value of label ``key``.

    RRs without the label are grouped under ``""``.  Keys come out sorted.
    Members of one class may carry different values (the label need not appear in
    any selector), so this walks the RR nodes, but never their peers.
    """
    degree_of_class = [sum(c) for c in class_counts(graph)]
    groups: dict[str, Counter[int]] = {}
    for cls, degree in zip(graph.classes, degree_of_class, strict=True):
        if cls.cluster_id is None:
            continue
        for m in cls.members:
            groups.setdefault(graph.nodes[m].labels.get(key, ""), Counter())[degree] += 1
    return {value: weighted(groups[value].items()) for value in sorted(groups)}
