"""The verifier's answer for a session graph: reachability, failures, load figures.

:func:`verify` runs one engine on the graph as rendered, then on the simulated
failures, ``graph.without(...)``: every RR alone, optionally combinations of
``fail_rrs`` RRs, and whole zones (the fast engine runs a batch of failures as
one propagation, ``fast.missing_after``).  A topology is correct only if every node
holds a route to every other node's prefix (domain.md section 3, last paragraph);
it tolerates a failure if every *remaining* node still holds every *remaining*
prefix.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from calico_rr.core.bgp.metrics import Stats, weighted
from calico_rr.core.bgp.sessions import SessionGraph, SessionKind
from calico_rr.core.bgp.verify import exact, fast
from calico_rr.core.bgp.verify.rules import Propagation

Engine = Literal["auto", "exact", "fast"]

#: An engine's ``propagate``: ``run(graph, updates=...)``.
_Run = Callable[..., Propagation]

#: An engine's ``missing_after``: missing pairs once each set of nodes has failed.
_Losses = Callable[[SessionGraph, Sequence[Iterable[int]]], list[int]]

#: Up to this many nodes "auto" uses the per-node reference engine: it is cheap
#: there and obviously right.  Above, the class engine gives the same answers.
AUTO_EXACT_MAX_NODES = 48

#: Largest number of k-RR failure combinations (up to symmetry) checked
#: exhaustively; above it a deterministic sample of this size is checked.
K_FAILURE_BUDGET = 2000

#: Seed of the k-RR failure sample: the same graph always gets the same sample.
K_FAILURE_SEED = 4456


@dataclass(frozen=True, slots=True)
class KFailure:
    """Simultaneous failure of ``k`` RRs.

    ``combinations`` is C(RRs, k), with ``k`` capped at the number of RRs (asking
    for more failures than there are RRs checks the loss of all of them).
    ``checked`` is the number of simulations run: one per combination up to
    symmetry, stopping at the first that loses routes; ``covered`` is how many
    combinations those simulations stand for.  ``covered < combinations`` with
    ``tolerant`` true means only a sample was checked.
    """

    k: int
    tolerant: bool
    combinations: int
    checked: int
    covered: int
    failed: tuple[str, ...] | None = None  # a combination that loses routes
    missing_pairs: int = 0  # pairs lost by that combination

    @property
    def sampled(self) -> bool:
        return self.tolerant and self.covered < self.combinations

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "tolerant": self.tolerant,
            "combinations": self.combinations,
            "checked": self.checked,
            "covered": self.covered,
            "sampled": self.sampled,
            "failed": list(self.failed) if self.failed is not None else None,
            "missing_pairs": self.missing_pairs,
        }


@dataclass(frozen=True, slots=True)
class ZoneFailure:
    tolerant: bool
    missing_pairs: int
    removed: int  # nodes removed with the zone

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What the verifier found.  ``to_dict`` is the JSON form, ``to_text`` the readable one."""

    engine: str
    nodes: int
    sessions: int
    reachable: bool
    missing_pairs: int
    missing_examples: tuple[tuple[str, str], ...]  # (node, origin of the prefix it lacks)
    #: Whether a route can circulate.  Never true in this model: every export
    #: strictly grows (|AS_PATH|, |CLUSTER_LIST|, learned-over-iBGP), asserted in
    #: ``model.export_path`` on every step of every propagation behind this report.
    loops: bool
    max_cluster_list: int
    updates_per_rr: Stats
    updates_per_session: Stats
    path_diversity: tuple[int, float]  # (min, mean) over held pairs
    single_rr_failure_tolerant: bool
    worst_single_rr_failure: tuple[str, int] | None  # (RR name, missing pairs)
    k_rr_failure: KFailure | None
    zone_failure: Mapping[str, ZoneFailure] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst_single_rr_failure
        return {
            "reachable": self.reachable,
            "missing_pairs": self.missing_pairs,
            "missing_examples": [list(pair) for pair in self.missing_examples],
            "loops": self.loops,
            "single_rr_failure_tolerant": self.single_rr_failure_tolerant,
            "worst_single_rr_failure": (
                None if worst is None else {"node": worst[0], "missing_pairs": worst[1]}
            ),
            "max_cluster_list": self.max_cluster_list,
            "updates_per_rr": self.updates_per_rr.to_dict(),
            "updates_per_session": self.updates_per_session.to_dict(),
            "path_diversity": {"min": self.path_diversity[0], "mean": self.path_diversity[1]},
            "k_rr_failure": None if self.k_rr_failure is None else self.k_rr_failure.to_dict(),
            "zone_failure": {name: z.to_dict() for name, z in self.zone_failure.items()},
            "engine": self.engine,
            "nodes": self.nodes,
            "sessions": self.sessions,
        }

    def to_text(self) -> list[str]:
        if self.nodes == 0:
            return [
                "NOT verified: the configuration holds no BGP node (no node with an IPv4 "
                "address), so there is nothing to prove"
            ]
        lines = [
            f"verified {self.nodes} BGP nodes, {self.sessions} sessions ({self.engine} engine)",
        ]
        if self.reachable:
            lines.append("reachability: OK, every node holds a route to every other node's prefix")
        else:
            lines.append(f"reachability: FAILED, {self.missing_pairs} (node, prefix) pairs missing")
            for node, origin in self.missing_examples:
                lines.append(f"  {node} has no route to {origin}'s prefix")
        lines.append(f"routing loops: {'yes' if self.loops else 'none (impossible in this model)'}")
        lines.append(f"longest shortest CLUSTER_LIST: {self.max_cluster_list}")
        lines.append(f"prefixes received per RR: {_stats_text(self.updates_per_rr)}")
        lines.append(
            f"prefixes per session (one direction): {_stats_text(self.updates_per_session)}"
        )
        lines.append(
            f"path diversity (neighbours per route): min {self.path_diversity[0]},"
            f" mean {self.path_diversity[1]}"
        )
        if self.single_rr_failure_tolerant:
            lines.append("single RR failure: tolerated (every RR checked)")
        else:
            assert self.worst_single_rr_failure is not None
            name, lost = self.worst_single_rr_failure
            lines.append(f"single RR failure: NOT tolerated; worst: {name} ({lost} pairs lost)")
        k = self.k_rr_failure
        if k is not None:
            scope = f"{k.covered} of {k.combinations} combinations"
            if k.sampled:
                scope += ", a deterministic sample"
            if k.tolerant:
                lines.append(f"{k.k} RRs failing together: tolerated ({scope})")
            else:
                assert k.failed is not None
                lines.append(
                    f"{k.k} RRs failing together: NOT tolerated; {', '.join(k.failed)}"
                    f" ({k.missing_pairs} pairs lost)"
                )
        for zone, z in sorted(self.zone_failure.items()):
            verdict = "tolerated" if z.tolerant else f"NOT tolerated ({z.missing_pairs} pairs lost)"
            lines.append(f"zone {zone} down ({z.removed} nodes): {verdict}")
        return lines


def _stats_text(s: Stats) -> str:
    return f"min {s.min}, mean {s.mean}, max {s.max}"


def _runner(graph: SessionGraph, engine: Engine) -> tuple[str, _Run, _Losses]:
    if engine == "auto":
        engine = "exact" if len(graph.nodes) <= AUTO_EXACT_MAX_NODES else "fast"
    if engine == "exact":
        return "exact", exact.propagate, exact.missing_after
    if engine == "fast":
        return "fast", fast.propagate, fast.missing_after
    raise ValueError(f"unknown engine {engine!r} (auto, exact, fast)")


def _rr_groups(graph: SessionGraph) -> list[list[int]]:
    """RR nodes grouped per class, whose members any permutation exchanges.

    Groups are per class, never merged along automorphisms (:func:`_rr_orbits`):
    swapping two classes moves all their members together, so for k failures
    (one count per group stands for every combination with those counts) the
    groups must be the classes themselves.  Sorted by lowest node index.
    """
    groups = [list(cls.members) for cls in graph.classes if cls.cluster_id is not None]
    return sorted((grp for grp in groups if grp), key=lambda grp: grp[0])


# -- automorphisms of the class graph, for single-RR failures ---------------------------


_KIND_CODE = {kind: i for i, kind in enumerate(SessionKind)}


def _shape(graph: SessionGraph) -> list[list[tuple[int, int]]]:
    """Per class: (peer class, code of the session kinds on both sides); code -1 marks
    a class sharing the cluster ID (the rules compare IDs only for equality)."""
    by_id: dict[str, list[int]] = {}
    for c, cls in enumerate(graph.classes):
        if cls.cluster_id is not None:
            by_id.setdefault(cls.cluster_id, []).append(c)
    shape: list[list[tuple[int, int]]] = []
    for c, cls in enumerate(graph.classes):
        row = [
            (d, 3 * _KIND_CODE[kind] + _KIND_CODE[graph.adj[d][c]])
            for d, kind in graph.adj[c].items()
        ]
        if cls.cluster_id is not None:
            row += [(d, -1) for d in by_id[cls.cluster_id] if d != c]
        shape.append(row)
    return shape


def _refine(shape: list[list[tuple[int, int]]], colour: list[int]) -> list[int]:
    """Colour refinement to a stable colouring, on two copies of the class graph.

    Vertex v < k is class v of copy 0, vertex k + v class v of copy 1.  A vertex's
    new colour is its colour plus the multiset of (edge code, peer colour).  Both
    copies share one colour table, so equal colours are comparable across copies.
    """
    k = len(shape)
    while True:
        table: dict[tuple[int, tuple[tuple[int, int], ...]], int] = {}
        new = []
        for v, col in enumerate(colour):
            off = 0 if v < k else k
            sig = (col, tuple(sorted((code, colour[off + d]) for d, code in shape[v - off])))
            new.append(table.setdefault(sig, len(table)))
        if len(table) == len(set(colour)):
            return new
        colour = new


def _class_automorphism(
    graph: SessionGraph, shape: list[list[tuple[int, int]]], base: list[int], a: int, b: int
) -> list[int] | None:
    """A class permutation mapping ``a`` to ``b`` that preserves everything the rules see.

    That is class sizes, ASNs, sessions with their kinds on both sides, and which
    classes share a cluster ID.  Found by individualising a and b and refining;
    then, as long as cells remain, first trying the order-preserving matching of
    every cell, else individualising one more matching pair.  No backtracking: a
    miss only costs simulations.  Always verified before use.
    """
    k = len(graph.classes)
    colour = base + base
    pick = (a, b)
    while True:
        fresh = max(colour) + 1
        colour[pick[0]] = colour[k + pick[1]] = fresh
        colour = _refine(shape, colour)
        cells: dict[int, tuple[list[int], list[int]]] = {}
        for v, col in enumerate(colour):
            cells.setdefault(col, ([], []))[0 if v < k else 1].append(v % k)
        if any(len(left) != len(right) for left, right in cells.values()):
            return None
        perm = [0] * k
        for left, right in cells.values():
            for x, y in zip(left, right, strict=True):
                perm[x] = y
        if _is_automorphism(graph, perm):
            return perm
        open_cells = [cell for cell in cells.values() if len(cell[0]) > 1]
        if not open_cells:
            return None
        left, right = min(open_cells, key=lambda cell: cell[0][0])
        pick = (left[0], right[0])


def _is_automorphism(graph: SessionGraph, perm: Sequence[int]) -> bool:
    ids: dict[str | None, str | None] = {}
    for c, cls in enumerate(graph.classes):
        img = graph.classes[perm[c]]
        if len(cls.members) != len(img.members) or cls.asn != img.asn:
            return False
        if (cls.cluster_id is None) != (img.cluster_id is None):
            return False
        if ids.setdefault(cls.cluster_id, img.cluster_id) != img.cluster_id:
            return False
        if {perm[d]: kind for d, kind in graph.adj[c].items()} != dict(graph.adj[perm[c]]):
            return False
    return len(set(ids.values())) == len(ids)  # IDs map one-to-one


def _rr_orbits(graph: SessionGraph) -> list[list[int]]:
    """RR nodes grouped so that an automorphism maps any member of a group to any other.

    Failing either gives isomorphic graphs, hence equal missing-pair counts, so
    one simulation per group suffices.  Members of one class always share a group;
    classes are merged along automorphisms found by :func:`_class_automorphism`
    (the orbit closure of the automorphisms found so far, union-find).  In the
    planner's topologies every RR of a multi or hierarchy cluster typically ends
    in one or a few groups.  Groups are sorted by lowest node index.
    """
    k = len(graph.classes)
    shape = _shape(graph)
    table: dict[tuple[int, int, bool], int] = {}
    base = [
        table.setdefault((len(cls.members), cls.asn, cls.cluster_id is None), len(table))
        for cls in graph.classes
    ]
    base = _refine(shape, base + base)[:k]

    parent = list(range(k))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    reps: list[int] = []
    for c, cls in enumerate(graph.classes):
        if cls.cluster_id is None or not cls.members:
            continue
        for r in reps:
            if find(r) == find(c):
                break
            if base[r] != base[c]:
                continue
            perm = _class_automorphism(graph, shape, base, r, c)
            if perm is not None:
                for x, y in enumerate(perm):
                    parent[find(x)] = find(y)
                break
        else:
            reps.append(c)
    orbits: dict[int, list[int]] = {}
    for c, cls in enumerate(graph.classes):
        if cls.cluster_id is not None:
            orbits.setdefault(find(c), []).extend(cls.members)
    return sorted((sorted(o) for o in orbits.values() if o), key=lambda o: o[0])


def _orbit_count(sizes: Sequence[int], k: int) -> int:
    """Number of vectors ``a`` with sum k and 0 <= a[i] <= sizes[i]."""
    ways = [1] + [0] * k
    for size in sizes:
        ways = [sum(ways[j - t] for t in range(min(size, j) + 1)) for j in range(k + 1)]
    return ways[k]


def _orbits(sizes: Sequence[int], k: int) -> Iterator[tuple[int, ...]]:
    """Those vectors, lexicographically from the largest first entry."""
    if not sizes:
        if k == 0:
            yield ()
        return
    rest = sum(sizes[1:])
    for a in range(min(sizes[0], k), max(0, k - rest) - 1, -1):
        for tail in _orbits(sizes[1:], k - a):
            yield (a, *tail)


def _k_orbits(
    graph: SessionGraph, groups: Sequence[Sequence[int]], k: int
) -> list[tuple[int, ...]]:
    """Failure combinations of k RRs to simulate, as numbers of failed RRs per group.

    Combinations with the same number of failed RRs in every group are exchanged
    by automorphisms (:func:`_rr_groups`), so one simulation per count vector
    covers them all.  When there are more than K_FAILURE_BUDGET vectors, a
    deterministic sample of that many is taken: first the combinations drawn only
    from RRs sharing one cluster ID (losing those is what cuts clients off,
    domain.md section 3: two clients whose reflectors all share an ID must share a
    reflector), then combinations drawn by a PRNG with a fixed seed.
    """
    sizes = [len(g) for g in groups]
    if _orbit_count(sizes, k) <= K_FAILURE_BUDGET:
        return list(_orbits(sizes, k))
    group_of = {x: i for i, grp in enumerate(groups) for x in grp}

    def vector(combo: Iterable[int]) -> tuple[int, ...]:
        counts = [0] * len(groups)
        for x in combo:
            counts[group_of[x]] += 1
        return tuple(counts)

    chosen: dict[tuple[int, ...], None] = {}
    by_id: dict[str, list[int]] = {}
    for x in sorted(group_of):
        cid = graph.nodes[x].cluster_id
        assert cid is not None
        by_id.setdefault(cid, []).append(x)
    for cid in sorted(by_id):
        for combo in itertools.combinations(by_id[cid], k):
            if len(chosen) >= K_FAILURE_BUDGET:
                break
            chosen[vector(combo)] = None
    rng = random.Random(K_FAILURE_SEED)
    rrs = sorted(group_of)
    while len(chosen) < K_FAILURE_BUDGET:
        chosen[vector(rng.sample(rrs, k))] = None
    return list(chosen)


def _worst_single_rr_failure(
    losses: _Losses, graph: SessionGraph, names: Sequence[str]
) -> tuple[str, int] | None:
    """(RR, missing pairs) of the single RR failure that loses most, or None."""
    # Failures are simulated once per symmetry class (see _rr_orbits): e.g. the
    # RRs of a multi cluster all fail alike, so it needs one run, not one per RR.
    orbits = _rr_orbits(graph)
    worst: tuple[str, int] | None = None
    for grp, lost in zip(orbits, losses(graph, [grp[:1] for grp in orbits]), strict=True):
        if lost and (worst is None or lost > worst[1]):
            worst = (names[grp[0]], lost)  # lowest-index RR among the worst, as a full scan
    return worst


#: k-RR failure combinations simulated per batch: the sweep stops at the first
#: batch holding a combination that loses routes.
_K_BATCH = 48


def _k_rr_failure(
    losses: _Losses, graph: SessionGraph, names: Sequence[str], fail_rrs: int
) -> KFailure:
    """Simulate ``fail_rrs`` RRs failing together, one combination per symmetry
    class (see :func:`_k_orbits`), up to the first that loses routes."""
    groups = _rr_groups(graph)
    n_rr = sum(len(grp) for grp in groups)
    k = min(fail_rrs, n_rr)
    vectors = _k_orbits(graph, groups, k)
    total = math.comb(n_rr, k)
    covered = 0
    combos = [
        sorted(x for grp, a in zip(groups, vec, strict=True) for x in grp[:a]) for vec in vectors
    ]
    for start in range(0, len(combos), _K_BATCH):
        batch = combos[start : start + _K_BATCH]
        for i, (combo, lost) in enumerate(zip(batch, losses(graph, batch), strict=True)):
            vec = vectors[start + i]
            covered += math.prod(math.comb(len(g), a) for g, a in zip(groups, vec, strict=True))
            if lost:
                return KFailure(
                    k=k,
                    tolerant=False,
                    combinations=total,
                    checked=start + i + 1,
                    covered=covered,
                    failed=tuple(names[r] for r in combo),
                    missing_pairs=lost,
                )
    return KFailure(k=k, tolerant=True, combinations=total, checked=len(combos), covered=covered)


def verify(
    graph: SessionGraph,
    *,
    fail_rrs: int = 1,
    fail_zones: Mapping[str, Sequence[int]] | None = None,
    engine: Engine = "auto",
    examples: int = 10,
) -> VerifyReport:
    """Verify ``graph`` (built from rendered resources by ``build_session_graph``).

    ``fail_rrs`` > 1 also simulates every combination of that many RRs failing
    together (or a deterministic sample, see :func:`_k_orbits`);
    ``fail_zones`` maps a zone name to the node indices that fail with it.
    """
    if fail_rrs < 1:
        raise ValueError("fail_rrs must be at least 1")
    name, run, losses = _runner(graph, engine)
    result: Propagation = run(graph, updates=True)
    names = [n.name for n in graph.nodes]
    worst = _worst_single_rr_failure(losses, graph, names)
    k_report = _k_rr_failure(losses, graph, names, fail_rrs) if fail_rrs > 1 else None
    zone_sets = {zone: set(members) for zone, members in (fail_zones or {}).items()}
    zone_lost = losses(graph, list(zone_sets.values()))
    zones = {
        zone: ZoneFailure(tolerant=lost == 0, missing_pairs=lost, removed=len(removed))
        for (zone, removed), lost in zip(zone_sets.items(), zone_lost, strict=True)
    }

    held = result.held_pairs
    return VerifyReport(
        engine=name,
        nodes=len(graph.nodes),
        sessions=graph.total_sessions(),
        reachable=result.missing_pairs == 0,
        missing_pairs=result.missing_pairs,
        missing_examples=tuple((names[x], names[o]) for x, o in result.missing_examples(examples)),
        loops=False,  # see VerifyReport.loops: asserted on every export
        max_cluster_list=result.max_cluster_list,
        updates_per_rr=Stats.of(result.rr_updates().values()),
        updates_per_session=weighted(result.session_updates().items()),
        path_diversity=(
            result.diversity_min,
            round(result.diversity_sum / held, 2) if held else 0.0,
        ),
        single_rr_failure_tolerant=worst is None,
        worst_single_rr_failure=worst,
        k_rr_failure=k_report,
        zone_failure=zones,
    )
