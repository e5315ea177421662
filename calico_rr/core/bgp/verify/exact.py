"""The reference engine: route propagation node by node, prefix by prefix.

For every origin node it runs a worklist over (holder, neighbour the path came
from, CLUSTER_LIST, AS_PATH) states, applying the rules of :mod:`.rules` on the
per-node adjacency (``graph.peers`` / ``graph.kind``).  Nothing here relies on
node classes, which makes it the yardstick :mod:`.fast` is tested against.
Cost grows with nodes x sessions: about half a minute for 1000 nodes (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.bgp.verify.rules import (
    ARRIVAL_OF,
    Arrival,
    Attrs,
    accepts,
    encode,
    export_path,
    insert_minimal,
    may_export,
    order_key,
)

#: states[x][w] = minimal attribute pairs node x holds from neighbour w (w = -1: own prefix).
_States = list[dict[int, list[Attrs]]]


@dataclass(frozen=True, slots=True)
class _NodeView:
    """Per-node adjacency with session kinds, and each node's cluster/AS bits."""

    adj: list[list[tuple[int, Arrival]]]  # x -> [(peer, kind on x's side)]
    kind: list[dict[int, Arrival]]  # x -> {peer: kind on x's side}
    cluster_bit: list[int]
    asn_bit: list[int]
    asn: list[int]
    #: x -> peers grouped by what the rules look at: (kind on x's side, kind on the
    #: peer's side, peer's cluster bit, peer's AS bit, peers).  The rules give one
    #: answer per group, so an RR with a thousand clients decides once, not 1000 times.
    groups: list[list[tuple[Arrival, Arrival, int, int, tuple[int, ...]]]]
    has_client: list[bool]  # has an rr-client session on its side
    has_ebgp: list[bool]


def node_view(graph: SessionGraph) -> _NodeView:
    enc = encode(graph)
    n = len(graph.nodes)
    kind: list[dict[int, Arrival]] = []
    for x in range(n):
        row: dict[int, Arrival] = {}
        for v in graph.peers(x):
            k = graph.kind(x, v)
            assert k is not None  # peers() and kind() describe the same sessions
            row[v] = ARRIVAL_OF[k]
        kind.append(row)
    cluster_bit = [enc.cluster_bit[graph.node_class[x]] for x in range(n)]
    asn_bit = [enc.asn_bit[graph.node_class[x]] for x in range(n)]
    groups: list[list[tuple[Arrival, Arrival, int, int, tuple[int, ...]]]] = []
    for x in range(n):
        by_rule: dict[tuple[Arrival, Arrival, int, int], list[int]] = {}
        for v, out in sorted(kind[x].items()):
            by_rule.setdefault((out, kind[v][x], cluster_bit[v], asn_bit[v]), []).append(v)
        groups.append([(*key, tuple(peers)) for key, peers in by_rule.items()])
    return _NodeView(
        adj=[sorted(row.items()) for row in kind],
        kind=kind,
        cluster_bit=cluster_bit,
        asn_bit=asn_bit,
        asn=[graph.classes[graph.node_class[x]].asn for x in range(n)],
        groups=groups,
        has_client=[any(out is Arrival.RR_CLIENT for _, out in kind[x].items()) for x in range(n)],
        has_ebgp=[any(out is Arrival.EBGP for _, out in kind[x].items()) for x in range(n)],
    )


def _propagate_origin(view: _NodeView, origin: int) -> _States:
    """Least fixpoint of export/receive for ``origin``'s prefix (domain.md section 3)."""
    states: _States = [{} for _ in view.adj]
    # Expanded in order_key order (see there): (key, holder, sender, cl, asp).
    work: list[tuple[tuple[int, int, int], int, int, int, int]] = [((0, 0, 0), origin, -1, 0, 0)]
    while work:
        _, x, w, cl, asp = heapq.heappop(work)
        if w >= 0 and (cl, asp) not in states[x][w]:
            continue  # superseded by a path with smaller attributes meanwhile
        held = Arrival.ORIGIN if w < 0 else view.kind[x][w]
        for out, back, v_cluster, v_asn, peers in view.groups[x]:
            sent = export_path(held, cl, asp, out, view.cluster_bit[x], view.asn_bit[x])
            if sent is None or not accepts(sent[0], sent[1], back, v_cluster, v_asn):
                continue
            key = order_key(back, sent[0], sent[1])
            for v in peers:
                # BIRD never sends a route back to the peer it came from; the
                # ORIGINATOR_ID check: the origin drops its own prefix.
                if v in (w, origin):
                    continue
                held_v = states[v].get(x)
                if held_v is None:
                    states[v][x] = [sent]
                elif not insert_minimal(held_v, sent[0], sent[1]):
                    continue
                # A path the receiver can send nowhere is stored, not queued (most
                # of what plain clients hold).
                if may_export(back, sent[0], v_cluster, view.has_client[v], view.has_ebgp[v]):
                    heapq.heappush(work, (key, v, x, sent[0], sent[1]))
    return states


def _advertised_to(view: _NodeView, states: _States, x: int, origin: int) -> Iterable[int]:
    """The peers ``x`` sends ``origin``'s prefix to (at least one path each)."""
    if x == origin:
        yield from (v for v, _ in view.adj[x])  # own prefix: to every peer
        return
    # Per outgoing kind, the senders x holds a path from that it may send on; a
    # peer gets the prefix unless that sender is the peer itself (never sent back).
    senders: dict[Arrival, list[int]] = {}
    for out in {out for _, out in view.adj[x]}:
        got = senders[out] = []
        for w, attrs in states[x].items():
            held = view.kind[x][w]
            if any(
                export_path(held, cl, asp, out, view.cluster_bit[x], view.asn_bit[x]) is not None
                for cl, asp in attrs
            ):
                got.append(w)
                if len(got) == 2:
                    break  # two senders: every peer gets it from one of them
    for v, out in view.adj[x]:
        got = senders[out]
        if len(got) == 2 or (got and got[0] != v):
            yield v


@dataclass(frozen=True, slots=True)
class ExactPropagation:
    """Per-node results (see :class:`~calico_rr.core.bgp.verify.rules.Propagation`)."""

    nodes: int
    missing: tuple[tuple[int, int], ...]  # sorted (node, origin)
    held: dict[tuple[int, int], tuple[int, int]]  # (node, origin) -> (min CL length, diversity)
    upd: dict[tuple[int, int], int] | None  # (u, v) -> prefixes u advertises to v
    rr_nodes: tuple[int, ...]
    engine: str = field(default="exact")

    @property
    def missing_pairs(self) -> int:
        return len(self.missing)

    @property
    def held_pairs(self) -> int:
        return len(self.held)

    @property
    def max_cluster_list(self) -> int:
        return max((m for m, _ in self.held.values()), default=0)

    @property
    def diversity_min(self) -> int:
        return min((d for _, d in self.held.values()), default=0)

    @property
    def diversity_sum(self) -> int:
        return sum(d for _, d in self.held.values())

    def missing_examples(self, limit: int) -> list[tuple[int, int]]:
        return list(self.missing[: max(limit, 0)])

    def min_cluster_list(self, node: int, origin: int) -> int | None:
        got = self.held.get((node, origin))
        return None if got is None else got[0]

    def diversity(self, node: int, origin: int) -> int | None:
        got = self.held.get((node, origin))
        return None if got is None else got[1]

    def updates(self, u: int, v: int) -> int | None:
        return None if self.upd is None else self.upd.get((u, v))

    def session_updates(self) -> dict[int, int]:
        return dict(Counter((self.upd or {}).values()))

    def rr_updates(self) -> dict[int, int]:
        if self.upd is None:
            return {}
        got = dict.fromkeys(self.rr_nodes, 0)
        for (_, v), count in self.upd.items():
            if v in got:
                got[v] += count
        return got


def propagate(graph: SessionGraph, *, updates: bool = True) -> ExactPropagation:
    """Propagate every node's prefix over ``graph``; ``updates=False`` skips UPDATE counts."""
    view = node_view(graph)
    n = len(graph.nodes)
    missing: list[tuple[int, int]] = []
    held: dict[tuple[int, int], tuple[int, int]] = {}
    upd: dict[tuple[int, int], int] | None = None
    if updates:
        upd = {(x, v): 0 for x in range(n) for v, _ in view.adj[x]}
    for origin in range(n):
        states = _propagate_origin(view, origin)
        for x in range(n):
            if x == origin:
                continue
            if not states[x]:
                missing.append((x, origin))
                continue
            shortest = min(cl.bit_count() for attrs in states[x].values() for cl, _ in attrs)
            held[(x, origin)] = (shortest, len(states[x]))
        if upd is not None:
            for x in range(n):
                for v in _advertised_to(view, states, x, origin):
                    upd[(x, v)] += 1
    missing.sort()
    return ExactPropagation(
        nodes=n,
        missing=tuple(missing),
        held=held,
        upd=upd,
        rr_nodes=tuple(i for i in range(n) if graph.is_rr(i)),
    )


def missing_after(graph: SessionGraph, failures: Sequence[Iterable[int]]) -> list[int]:
    """For each set of failed nodes, the pairs of surviving nodes that miss a route."""
    return [propagate(graph.without(f), updates=False).missing_pairs for f in failures]


# ---------------------------------------------------------------------------
# Path listing, for explanations and for checking lab results hop by hop
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Path:
    """One path ``node`` holds for ``hops[0]``'s prefix, as BIRD's add-path table would."""

    hops: tuple[int, ...]  # origin first, holder last
    cluster_list: tuple[str, ...]  # most recent first
    as_path: tuple[int, ...]  # most recent first


def paths(graph: SessionGraph, origin: int, node: int, *, limit: int = 1000) -> list[Path]:
    """Every path ``node`` holds for ``origin``'s prefix, without any pruning.

    Enumerates hop sequences with the rules of :mod:`.rules`; the number of paths
    can grow exponentially, so this is for small graphs (labs, explanations).
    Raises ValueError once more than ``limit`` paths to ``node`` are found.
    Paths are returned sorted by hop sequence.
    """
    view = node_view(graph)
    found: list[Path] = []
    # (hops, CLUSTER_LIST names, AS_PATH, cl bits, as bits)
    stack: list[tuple[tuple[int, ...], tuple[str, ...], tuple[int, ...], int, int]] = [
        ((origin,), (), (), 0, 0)
    ]
    while stack:
        hops, cl_names, as_path, cl, asp = stack.pop()
        x = hops[-1]
        w = hops[-2] if len(hops) > 1 else -1
        held = Arrival.ORIGIN if w < 0 else view.kind[x][w]
        for v, out in view.adj[x]:
            if v == w:
                continue
            sent = export_path(held, cl, asp, out, view.cluster_bit[x], view.asn_bit[x])
            if sent is None or v == origin:
                continue
            if not accepts(sent[0], sent[1], view.kind[v][x], view.cluster_bit[v], view.asn_bit[v]):
                continue
            if out is Arrival.EBGP:
                new_cl: tuple[str, ...] = ()
                new_as = (view.asn[x], *as_path)
            else:
                new_as = as_path
                new_cl = cl_names
                if sent[0] != cl:
                    cid = graph.nodes[x].cluster_id
                    assert cid is not None
                    new_cl = (cid, *cl_names)
            item = ((*hops, v), new_cl, new_as, sent[0], sent[1])
            if v == node:
                found.append(Path(hops=item[0], cluster_list=new_cl, as_path=new_as))
                if len(found) > limit:
                    raise ValueError(f"more than {limit} paths; graph too large to list them")
            stack.append(item)
    return sorted(found, key=lambda p: p.hops)
