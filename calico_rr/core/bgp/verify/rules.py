"""The BGP rules the verifier applies, and the result shape both engines share.

This module is the single place where route propagation is *decided*: what a
speaker exports to a neighbour and what a neighbour accepts.  The two engines
(:mod:`.exact`, per node; :mod:`.fast`, per class of interchangeable nodes) only
differ in how they walk the session graph; they call the same rules.

The model (domain.md sections 2-3):

* every node in the graph originates exactly one prefix, its pod block;
* a path carries its originator, a CLUSTER_LIST and an AS_PATH; the holder also
  knows the session it arrived over, i.e. the session kind *on the holder's side*
  (:class:`Arrival`) and the neighbour it came from;
* export and receive follow RFC 4456 as BIRD 1.6 applies it (domain.md section 3),
  including the measured lab A behaviour: a reflector accepts, over a plain iBGP
  session, a path carrying its own cluster ID, but never reflects it.

Path attributes are kept as *sets*, encoded as bit masks.  CLUSTER_LIST needs no
order here: a reflector never prepends an ID that is already in the list (it
refuses to reflect such a path), so the list never repeats an ID and its length
is the size of the set.  AS_PATH likewise never repeats an AS: a path that left
an AS is dropped when it comes back over eBGP (the AS_PATH loop check), and iBGP
never changes it.

Why sets are enough, and why pruning is exact: every rule is monotone in the
attributes.  A path whose CLUSTER_LIST and AS_PATH are subsets of another path's,
held by the same node from the same neighbour, is exported wherever the other is
and accepted wherever the other is, with again-smaller attributes.  Engines
therefore keep, per (holder, neighbour), only the minimal attribute pairs (an
antichain, :func:`insert_minimal`).  This keeps the search polynomial where the
real add-path table (BIRD's ``add paths on``, domain.md section 2) can hold
exponentially many paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from calico_rr.core.bgp.sessions import NodeClass, SessionGraph, SessionKind, session_kind
from calico_rr.model import CalicoNode


class Arrival(IntEnum):
    """How the holder learned a path: its own prefix, or the kind of the session on its side."""

    ORIGIN = 0
    IBGP = 1
    RR_CLIENT = 2
    EBGP = 3


ARRIVAL_OF: dict[SessionKind, Arrival] = {
    SessionKind.IBGP: Arrival.IBGP,
    SessionKind.RR_CLIENT: Arrival.RR_CLIENT,
    SessionKind.EBGP: Arrival.EBGP,
}

#: A path's attributes as the rules see them: (CLUSTER_LIST bits, AS_PATH bits).
Attrs = tuple[int, int]


# ---------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------


def export_path(
    held: Arrival, cl: int, asp: int, out: Arrival, cluster_bit: int, asn_bit: int
) -> Attrs | None:
    """Attributes of the path a speaker sends for a route it holds, or None if it sends none.

    ``held`` is how the speaker learned the route, ``out`` the kind of the outgoing
    session on the speaker's side, ``cluster_bit``/``asn_bit`` the speaker's own
    cluster ID (0: not a reflector) and AS.  The caller has already excluded the
    neighbour the path came from: BIRD never returns a route to the peer that sent it.

    The assertions are the loop-freedom proof used by the report (``loops``): every
    export strictly increases the key (|AS_PATH|, |CLUSTER_LIST|, learned-over-iBGP)
    in lexicographic order, and that key is bounded by the number of ASNs and
    cluster IDs, so no path can circulate; propagation always converges.
    """
    if out is Arrival.EBGP:
        # Towards an eBGP peer CLUSTER_LIST and ORIGINATOR_ID are stripped (RFC 4456
        # section 8: they are non-transitive outside the AS) and the AS is prepended.
        # A speaker never holds a path with its own AS in AS_PATH: it entered this AS
        # over eBGP (AS_PATH loop check) or was originated here.
        assert not asp & asn_bit, "AS_PATH already holds the exporting AS"
        return 0, asp | asn_bit
    if held is Arrival.ORIGIN or held is Arrival.EBGP:
        # Own prefix and eBGP-learned routes go to every iBGP peer unchanged
        # (domain.md section 3: only iBGP-learned routes are subject to reflection).
        assert cl == 0, "own and eBGP-learned paths carry no CLUSTER_LIST"
        return cl, asp
    # iBGP-learned, sent over iBGP: this is reflection (RFC 4456 section 6, as BIRD
    # 1.6 applies it): routes from a client go to every peer, routes from a
    # non-client go to clients only.  A node without cluster ID has no client
    # sessions, so it never re-advertises iBGP-learned routes over iBGP.
    if held is not Arrival.RR_CLIENT and out is not Arrival.RR_CLIENT:
        return None
    assert cluster_bit, "an rr-client session on a node without cluster ID"
    if cl & cluster_bit:
        # BIRD does not reflect a route whose CLUSTER_LIST holds its own cluster ID
        # (domain.md section 3; lab A: RR2 holds C3's prefix but never passes it on).
        return None
    # The reflector prepends its cluster ID (RFC 4456 section 8).
    return cl | cluster_bit, asp


def accepts(cl: int, asp: int, inbound: Arrival, cluster_bit: int, asn_bit: int) -> bool:
    """Whether a speaker keeps a path it received over a session of kind ``inbound``.

    The ORIGINATOR_ID check (a node drops a path of its own prefix) is the caller's:
    it depends on who originated the prefix, not on the attributes.
    """
    if inbound is Arrival.EBGP and asp & asn_bit:
        # AS_PATH loop check on eBGP receive.
        return False
    # Own cluster ID in CLUSTER_LIST over a client session: dropped (RFC 4456
    # section 8; lab C: RR4 never holds C3's prefix).  Over a plain iBGP session it
    # is accepted for the node's own use (lab A), and export_path never reflects it.
    return not (cl & cluster_bit and inbound is Arrival.RR_CLIENT)


def may_export(
    held: Arrival, cl: int, cluster_bit: int, client_sessions: bool, ebgp_sessions: bool
) -> bool:
    """Whether :func:`export_path` can return a path for some session of this speaker.

    ``client_sessions``/``ebgp_sessions``: whether the speaker has any session of
    that kind on its side.  Lets engines skip expanding paths that go nowhere,
    such as every route a plain client holds (most of the table at scale).
    """
    if ebgp_sessions or held is Arrival.ORIGIN or held is Arrival.EBGP:
        return True
    if cl & cluster_bit or not cluster_bit:
        return False  # not reflected: own ID in CLUSTER_LIST, or not a reflector
    return held is Arrival.RR_CLIENT or client_sessions


def order_key(held: Arrival, cl: int, asp: int) -> tuple[int, int, int]:
    """(|AS_PATH|, |CLUSTER_LIST|, learned over iBGP): the key every export strictly grows.

    Engines expand held paths in increasing key order (a priority queue), for two
    reasons.  Every path derives from one with a smaller key, and a path whose
    attributes are subsets of another's has a key no larger; so when a path is
    expanded, every path that could dominate it is already in place and a
    dominated path is never expanded.  Depth-first order instead expands long
    reflection chains first: in a mesh of RRs with distinct cluster IDs (the multi
    cluster topology, domain.md section 4) that explores every subset of the IDs.
    """
    return asp.bit_count(), cl.bit_count(), int(held is Arrival.IBGP or held is Arrival.RR_CLIENT)


def insert_minimal(antichain: list[Attrs], cl: int, asp: int) -> bool:
    """Add ``(cl, asp)`` to a list of pairwise-incomparable attribute pairs.

    Returns False (and leaves the list alone) when an element is a subset of the
    new pair in both components: that element already does everything the new
    path could (see the module docstring).  Otherwise removes the elements the
    new pair dominates and appends it.
    """
    for ocl, oasp in antichain:
        if ocl & ~cl == 0 and oasp & ~asp == 0:
            return False
    antichain[:] = [(ocl, oasp) for ocl, oasp in antichain if cl & ~ocl or asp & ~oasp]
    antichain.append((cl, asp))
    return True


# ---------------------------------------------------------------------------
# The graph, encoded once for the engines
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Encoded:
    """A session graph's classes with cluster IDs and ASNs as bits, validated.

    ``adj[c]`` lists ``(d, arrival kind on c's side)`` in ascending ``d``.
    """

    cluster_ids: tuple[str, ...]  # bit i stands for cluster_ids[i]
    asns: tuple[int, ...]  # bit i stands for asns[i]
    cluster_bit: tuple[int, ...]  # per class
    asn_bit: tuple[int, ...]  # per class
    sizes: tuple[int, ...]  # per class
    adj: tuple[tuple[tuple[int, Arrival], ...], ...]


def encode(graph: SessionGraph) -> Encoded:
    """Encode ``graph`` for the engines; raise ValueError if it breaks domain.md section 2.

    The rules rely on these invariants of a graph built the calico-node way: a
    session exists on both sides, it is eBGP on one side iff on the other and iff
    the ASNs differ, and only a node with a cluster ID has client sessions.
    """
    ids = sorted({c.cluster_id for c in graph.classes if c.cluster_id is not None})
    asns = sorted({c.asn for c in graph.classes})
    id_bit = {cid: 1 << i for i, cid in enumerate(ids)}
    as_bit = {asn: 1 << i for i, asn in enumerate(asns)}
    if len(graph.adj) != len(graph.classes):
        raise ValueError("session graph: adj and classes differ in length")
    adj: list[tuple[tuple[int, Arrival], ...]] = []
    for c, cls in enumerate(graph.classes):
        row: list[tuple[int, Arrival]] = []
        for d, kind in sorted(graph.adj[c].items()):
            other = graph.classes[d]
            back = graph.adj[d].get(c)
            if back is None:
                raise ValueError(f"session graph: class {c} -> {d} has no reverse side")
            if (kind is SessionKind.EBGP) != (cls.asn != other.asn) or (
                back is SessionKind.EBGP
            ) != (kind is SessionKind.EBGP):
                raise ValueError(f"session graph: class {c} -> {d}: eBGP iff ASNs differ")
            if kind is SessionKind.RR_CLIENT and cls.cluster_id is None:
                raise ValueError(f"session graph: class {c} has client sessions but no cluster ID")
            row.append((d, ARRIVAL_OF[kind]))
        adj.append(tuple(row))
    if sum(len(c.members) for c in graph.classes) != len(graph.nodes):
        raise ValueError("session graph: classes do not partition the nodes")
    for c, cls in enumerate(graph.classes):
        for i in cls.members:
            if graph.node_class[i] != c:
                raise ValueError(f"session graph: node {i} missing from its class {c}")
            if graph.nodes[i].cluster_id != cls.cluster_id:
                raise ValueError(f"session graph: node {i} and its class differ in cluster ID")
    return Encoded(
        cluster_ids=tuple(ids),
        asns=tuple(asns),
        cluster_bit=tuple(
            id_bit[c.cluster_id] if c.cluster_id is not None else 0 for c in graph.classes
        ),
        asn_bit=tuple(as_bit[c.asn] for c in graph.classes),
        sizes=tuple(len(c.members) for c in graph.classes),
        adj=tuple(adj),
    )


# ---------------------------------------------------------------------------
# What an engine answers
# ---------------------------------------------------------------------------


class Propagation(Protocol):
    """Route state after one full table exchange, as computed by an engine.

    Pairs are (node, origin) with node != origin: does ``node`` hold a route to the
    prefix ``origin`` originates.  Update counts are per directed session ``u -> v``:
    how many prefixes ``u`` advertises to ``v``.  A prefix counts once per session
    however many add-path paths carry it: with ``add paths on`` (domain.md section 2)
    BIRD would send every path it holds, and in a mesh of reflectors with distinct
    cluster IDs that number grows exponentially with the mesh size, so counting
    paths would measure the model's blow-up rather than the table size.  Prefixes
    sent to a neighbour that then drops them (its own ID in CLUSTER_LIST, its own
    prefix) are counted: they are real UPDATE traffic (domain.md section 4,
    hierarchy drawback).
    """

    @property
    def engine(self) -> str: ...

    @property
    def nodes(self) -> int: ...

    @property
    def missing_pairs(self) -> int: ...

    @property
    def held_pairs(self) -> int: ...

    @property
    def max_cluster_list(self) -> int:
        """Max over held pairs of the shortest CLUSTER_LIST among the held paths (0 if none)."""
        ...

    @property
    def diversity_min(self) -> int:
        """Min over held pairs of the number of distinct neighbours a path is held from."""
        ...

    @property
    def diversity_sum(self) -> int:
        """Sum of that number over held pairs (mean = diversity_sum / held_pairs)."""
        ...

    def missing_examples(self, limit: int) -> list[tuple[int, int]]:
        """The first ``limit`` missing (node, origin) pairs in ascending order."""
        ...

    def min_cluster_list(self, node: int, origin: int) -> int | None:
        """Shortest CLUSTER_LIST length among held paths; None if not held or node == origin."""
        ...

    def diversity(self, node: int, origin: int) -> int | None:
        """Distinct neighbours ``node`` holds ``origin``'s prefix from; None if missing."""
        ...

    def updates(self, u: int, v: int) -> int | None:
        """Prefixes ``u`` advertises to ``v``; None when there is no session (or not computed)."""
        ...

    def session_updates(self) -> dict[int, int]:
        """Histogram over directed sessions: update count -> number of directed sessions."""
        ...

    def rr_updates(self) -> dict[int, int]:
        """Per RR node index: prefixes received, summed over all its sessions."""
        ...


# ---------------------------------------------------------------------------
# Session graphs by hand (tests, benchmarks, what-if checks)
# ---------------------------------------------------------------------------


def class_graph(
    classes: Sequence[tuple[Sequence[str], str | None, int]],
    links: Iterable[tuple[int, int]],
) -> SessionGraph:
    """A session graph from classes ``(member names, cluster ID, ASN)`` and class links.

    A link ``(c, d)`` gives every member of ``c`` a session with every member of
    ``d`` (``c == d``: members peer with each other).  Session kinds follow
    domain.md section 2: eBGP between different ASNs; otherwise a client session on
    the side that has a cluster ID when the peer's cluster ID differs; else plain iBGP.
    Node names must be unique; nodes are numbered in name order like
    ``build_session_graph`` does.
    """
    named = sorted((name, c) for c, (members, _, _) in enumerate(classes) for name in members)
    if len({name for name, _ in named}) != len(named):
        raise ValueError("class_graph: duplicate node name")
    nodes = tuple(
        CalicoNode(
            name=name,
            ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            asn=classes[c][2],
            cluster_id=classes[c][1],
        )
        for i, (name, c) in enumerate(named)
    )
    node_class = tuple(c for _, c in named)
    members: list[list[int]] = [[] for _ in classes]
    for i, c in enumerate(node_class):
        members[c].append(i)
    adj: list[dict[int, SessionKind]] = [{} for _ in classes]
    for a, b in links:
        _, aid, aas = classes[a]
        _, bid, bas = classes[b]
        adj[a][b] = session_kind(aas, aid, bas, bid)
        adj[b][a] = session_kind(bas, bid, aas, aid)
    return SessionGraph(
        nodes=nodes,
        node_class=node_class,
        classes=tuple(
            NodeClass(members=tuple(m), cluster_id=cid, asn=asn)
            for m, (_, cid, asn) in zip(members, classes, strict=True)
        ),
        adj=tuple(adj),
    )
