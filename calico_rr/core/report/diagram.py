"""A group-level picture of one plan's BGP sessions, from the session graph's classes.

Drawing every node stops being readable long before 5000 nodes, so the picture is
drawn over *boxes*:

* an **RR box** per cluster ID: the reflectors sharing it (a spine layer, a rack's
  RRs, a quorum group, the RRs of a single cluster, or one RR of a multi cluster);
* a **client box** per symmetry class of non-RR nodes (``SessionGraph.classes``:
  nodes matching the same selectors, i.e. a client group, quorum or rack).

A **link** between two boxes carries the number of node-to-node sessions between
them and their kind, read on both sides as BIRD is configured (domain.md section 2):

* ``client``: an RR and its client (``rr client`` on the RR's side only);
* ``rr-rr``: reflectors under different cluster IDs, each a client of the other;
* ``ibgp``: plain iBGP on both sides (RRs sharing a cluster ID, or the mesh);
* ``ebgp``: different AS numbers.

Sessions inside a box (e.g. the spines' iBGP mesh) are counted on the box.  When
three or more boxes of one row are all linked pairwise with one kind (the RR mesh
of multi and quorum), the links are replaced by one :class:`Mesh`.  Every session
of the graph is counted exactly once: in a link, in a box or in a mesh.

Everything is computed per class, so the cost does not depend on session counts;
labels are read from every member (classes need not agree on unselected labels
such as the zone).  Pure; drawn by ``adapters/plots.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from calico_rr.core.bgp.sessions import SessionGraph, SessionKind
from calico_rr.core.planning.config import (
    CROSS_LABEL,
    GENERATED_RACK_LABEL,
    GROUP_LABEL,
    QUORUM_LABEL,
    RACK_LABEL,
    ROLE_LABEL,
    SLOT_LABEL,
)
from calico_rr.model import ZONE_LABEL

#: Link kind -> how to read it (legend text).
LINK_KINDS: dict[str, str] = {
    "client": "RR - client (rr client on the RR side)",
    "rr-rr": "RR - RR, different cluster IDs (each the other's client)",
    "ibgp": "plain iBGP both sides (same cluster ID, or mesh)",
    "ebgp": "eBGP (different AS)",
}


@dataclass(frozen=True, slots=True)
class Box:
    role: str  # "spine" | "rack-rr" | "rr" | "client"
    title: str
    detail: str
    members: int
    cluster_id: str | None
    zones: tuple[str, ...]  # distinct zone label values of the members, sorted
    racks: tuple[str, ...]  # distinct rack (or generated rack) values, sorted
    internal: int = 0  # sessions between members of this box
    internal_kinds: tuple[str, ...] = ()

    @property
    def is_rr(self) -> bool:
        return self.cluster_id is not None


@dataclass(frozen=True, slots=True)
class Link:
    a: int  # box index, a < b
    b: int
    sessions: int
    kind: str  # a key of LINK_KINDS


@dataclass(frozen=True, slots=True)
class Mesh:
    """Boxes of one row linked pairwise with one kind, drawn as one frame."""

    boxes: tuple[int, ...]
    sessions: int
    kind: str


@dataclass(frozen=True, slots=True)
class Diagram:
    topology: str
    nodes: int
    sessions: int  # every session of the graph
    boxes: tuple[Box, ...]
    links: tuple[Link, ...]
    meshes: tuple[Mesh, ...]
    #: Box indices per row, top to bottom, in drawing order: spines, other RRs, clients.
    rows: tuple[tuple[int, ...], ...]

    def counted_sessions(self) -> int:
        """Sessions in links, boxes and meshes; equals ``sessions`` by construction."""
        return (
            sum(link.sessions for link in self.links)
            + sum(box.internal for box in self.boxes)
            + sum(mesh.sessions for mesh in self.meshes)
        )

    def summary(self) -> list[str]:
        """Readable lines: what the boxes are and the sessions by kind."""
        rr = [b for b in self.boxes if b.is_rr]
        clients = [b for b in self.boxes if not b.is_rr]
        lines = [
            f"{self.topology or 'plan'}: {self.nodes} BGP nodes, {self.sessions} sessions; "
            f"{len(rr)} RR boxes (one per cluster ID, {sum(b.members for b in rr)} RRs), "
            f"{len(clients)} client boxes ({sum(b.members for b in clients)} nodes)"
        ]
        by_kind: dict[str, list[int]] = {}
        for link in self.links:
            by_kind.setdefault(link.kind, []).append(link.sessions)
        for kind in LINK_KINDS:
            counts = by_kind.get(kind)
            if counts:
                lo, hi = min(counts), max(counts)
                each = str(lo) if lo == hi else f"{lo}-{hi}"
                lines.append(
                    f"{LINK_KINDS[kind]}: {len(counts)} links, {sum(counts)} sessions "
                    f"({each} per link)"
                )
        inside = [b for b in self.boxes if b.internal]
        if inside:
            kinds = sorted({k for b in inside for k in b.internal_kinds})
            lines.append(
                f"inside boxes ({', '.join(kinds)}): {sum(b.internal for b in inside)} sessions "
                f"in {len(inside)} boxes"
            )
        for mesh in self.meshes:
            lines.append(
                f"full mesh of {len(mesh.boxes)} RR boxes ({LINK_KINDS[mesh.kind]}): "
                f"{mesh.sessions} sessions"
            )
        return lines


def link_kind(a: SessionKind, b: SessionKind) -> str:
    """The kind of a session configured as ``a`` on one side and ``b`` on the other."""
    if SessionKind.EBGP in (a, b):
        return "ebgp"
    if a is SessionKind.RR_CLIENT and b is SessionKind.RR_CLIENT:
        return "rr-rr"
    if SessionKind.RR_CLIENT in (a, b):
        return "client"
    return "ibgp"


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key that puts r2 before r10."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _values(graph: SessionGraph, members: Iterable[int], *keys: str) -> tuple[str, ...]:
    """Distinct values of the first of ``keys`` each member carries, sorted naturally."""
    out: set[str] = set()
    for m in members:
        labels = graph.nodes[m].labels
        for key in keys:
            value = labels.get(key)
            if value is not None:
                out.add(value)
                break
    return tuple(sorted(out, key=_natural))


def _names(values: tuple[str, ...], empty: str) -> str:
    if not values:
        return empty
    if len(values) <= 3:
        return ", ".join(values)
    return f"{values[0]} .. {values[-1]} ({len(values)})"


def _pair_sessions(graph: SessionGraph, c: int, d: int) -> int:
    n_c = len(graph.classes[c].members)
    if c == d:
        return n_c * (n_c - 1) // 2
    return n_c * len(graph.classes[d].members)


def group_diagram(
    graph: SessionGraph,
    *,
    topology: str = "",
    zone_label: str | None = ZONE_LABEL,
    rack_label: str = RACK_LABEL,
) -> Diagram:
    """The boxes, links and rows of ``graph`` (see the module docstring)."""
    keys, box_of, members = _group_classes(graph)
    internal, internal_kinds, link_sessions = _count_sessions(graph, box_of, len(keys))
    boxes = [
        _make_box(
            graph, keys[i], members[i], zone_label, rack_label, internal[i], internal_kinds[i]
        )
        for i in range(len(keys))
    ]
    links = [Link(a, b, n, k) for (a, b, k), n in sorted(link_sessions.items())]
    spines, rrs, clients = _rows(boxes, links)
    meshes, links = _meshes((spines, rrs), links)
    return Diagram(
        topology=topology,
        nodes=len(graph.nodes),
        sessions=graph.total_sessions(),
        boxes=tuple(boxes),
        links=tuple(links),
        meshes=tuple(meshes),
        rows=tuple(tuple(r) for r in (spines, rrs, clients) if r),
    )


def _group_classes(
    graph: SessionGraph,
) -> tuple[list[tuple[str, str]], list[int], list[list[int]]]:
    """RR classes grouped by cluster ID, other classes one box each:
    (key of each box, box of each class, node members of each box)."""
    box_key: list[tuple[str, str]] = []
    for c, cls in enumerate(graph.classes):
        box_key.append(("rr", cls.cluster_id) if cls.cluster_id is not None else ("c", str(c)))
    keys = list(dict.fromkeys(box_key))
    index = {k: i for i, k in enumerate(keys)}
    box_of = [index[k] for k in box_key]
    members: list[list[int]] = [[] for _ in keys]
    for c, cls in enumerate(graph.classes):
        members[box_of[c]].extend(cls.members)
    return keys, box_of, members


def _count_sessions(
    graph: SessionGraph, box_of: list[int], boxes: int
) -> tuple[list[int], list[set[str]], dict[tuple[int, int, str], int]]:
    """Sessions inside each box (count, kinds) and on each link (box a < box b, kind)."""
    internal = [0] * boxes
    internal_kinds: list[set[str]] = [set() for _ in range(boxes)]
    link_sessions: dict[tuple[int, int, str], int] = {}
    for c, peers in enumerate(graph.adj):
        for d, kind in peers.items():
            if d < c:
                continue  # each unordered class pair once
            count = _pair_sessions(graph, c, d)
            if not count:
                continue
            k = link_kind(kind, graph.adj[d][c])
            a, b = sorted((box_of[c], box_of[d]))
            if a == b:
                internal[a] += count
                internal_kinds[a].add(k)
            else:
                link_sessions[(a, b, k)] = link_sessions.get((a, b, k), 0) + count
    return internal, internal_kinds, link_sessions


def _rows(boxes: list[Box], links: list[Link]) -> tuple[list[int], list[int], list[int]]:
    """Spines, other RRs (by name: slots, racks), then clients under their RRs."""

    def by_name(i: int) -> tuple[Any, ...]:
        return (_natural(boxes[i].title), boxes[i].zones)

    spines = sorted((i for i, b in enumerate(boxes) if b.role == "spine"), key=by_name)
    rrs = sorted((i for i, b in enumerate(boxes) if b.is_rr and b.role != "spine"), key=by_name)
    position: dict[int, float] = {}
    for line in (spines, rrs):
        for pos, i in enumerate(line):
            position[i] = (pos + 0.5) / len(line)
    neighbours: dict[int, list[int]] = {}
    for link in links:
        neighbours.setdefault(link.a, []).append(link.b)
        neighbours.setdefault(link.b, []).append(link.a)

    def under(i: int) -> tuple[Any, ...]:
        # barycentre of the linked RR boxes (rack RRs before spines), then zone and name
        near = [position[j] for j in neighbours.get(i, []) if j in position and j in rrs]
        near = near or [position[j] for j in neighbours.get(i, []) if j in position]
        centre = sum(near) / len(near) if near else 2.0
        return (round(centre, 6), boxes[i].zones, _natural(boxes[i].title))

    clients = sorted((i for i, b in enumerate(boxes) if not b.is_rr), key=under)
    return spines, rrs, clients


def _meshes(lines: Iterable[list[int]], links: list[Link]) -> tuple[list[Mesh], list[Link]]:
    """A mesh for each row whose boxes are all linked pairwise with one kind, and
    the links that are left outside the meshes."""
    meshes: list[Mesh] = []
    by_pair = {(x.a, x.b): x for x in links}
    for line in lines:
        if len(line) < 3:
            continue
        pairs = [(min(p, q), max(p, q)) for n, p in enumerate(line) for q in line[n + 1 :]]
        found = [by_pair.get(pair) for pair in pairs]
        kinds = {x.kind for x in found if x is not None}
        if all(x is not None for x in found) and len(kinds) == 1:
            inside = set(pairs)
            sessions = sum(x.sessions for x in found if x is not None)
            meshes.append(Mesh(tuple(line), sessions, kinds.pop()))
            links = [x for x in links if (x.a, x.b) not in inside]
    return meshes, links


def _make_box(
    graph: SessionGraph,
    key: tuple[str, str],
    members: list[int],
    zone_label: str | None,
    rack_label: str,
    internal: int,
    internal_kinds: set[str],
) -> Box:
    zones = _values(graph, members, zone_label) if zone_label else ()
    racks = _values(graph, members, rack_label, GENERATED_RACK_LABEL)
    n = len(members)
    cluster_id = key[1] if key[0] == "rr" else None
    if cluster_id is not None:
        roles = _values(graph, members, ROLE_LABEL)
        role = roles[0] if len(roles) == 1 and roles[0] in ("spine", "rack-rr") else "rr"
        if role == "spine":
            title = "spines" if n > 1 else "spine"
        elif role == "rack-rr":
            title = _names(racks, "rack RRs")
        elif n == 1:
            title = _names(_values(graph, members, SLOT_LABEL), graph.nodes[members[0]].name)
        else:
            slots = _values(graph, members, SLOT_LABEL)
            title = _names(slots, "") if 0 < len(slots) <= 3 else f"{n} RRs"
        detail = f"{n} RR{'s' if n > 1 else ''} · ID {cluster_id}"
    else:
        role = "client"
        quorums = _values(graph, members, QUORUM_LABEL)
        if quorums:
            crosses = _values(graph, members, CROSS_LABEL)
            title = _names(quorums, "?") + (f" + {_names(crosses, '?')}" if crosses else "")
        else:
            title = _names(_values(graph, members, GROUP_LABEL), "clients")
        detail = f"{n} node{'s' if n != 1 else ''}"
    return Box(
        role=role,
        title=title,
        detail=detail,
        members=n,
        cluster_id=cluster_id,
        zones=zones,
        racks=racks,
        internal=internal,
        internal_kinds=tuple(sorted(internal_kinds)),
    )
