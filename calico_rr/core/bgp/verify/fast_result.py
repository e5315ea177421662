"""What the class engine (:mod:`.fast`) found, read per node pair and per session.

Results are per class pair; a node pair maps to its classes, and counts multiply
class sizes out (the origin's own class counts one member less for its prefix).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from calico_rr.core.bgp.sessions import SessionGraph, bit_indices
from calico_rr.core.bgp.verify.rules import Encoded


@dataclass(frozen=True, slots=True)
class FastPropagation:
    """Class-level results (see :class:`~calico_rr.core.bgp.verify.rules.Propagation`).

    ``held[c]``: origin classes whose prefix the members of class c hold.
    ``min_cl[c]``: (CLUSTER_LIST length, origin classes) pairs, ascending length.
    ``heard[c]``: (sender class, origin classes it sent an accepted path for).
    ``adv[c]``: peer class -> origin classes for which members of c advertise the
    prefix of an origin *other than the receiver* to members of that class;
    ``adv_origin[c]``: origin classes B for which members of c advertise B's
    prefix to its origin (a path learned elsewhere, sent back to where it began).
    """

    graph: SessionGraph
    enc: Encoded
    held: tuple[int, ...]
    min_cl: tuple[tuple[tuple[int, int], ...], ...]
    heard: tuple[tuple[tuple[int, int], ...], ...]
    adv: tuple[dict[int, int], ...] | None
    adv_origin: tuple[int, ...] | None
    engine: str = field(default="fast")

    @property
    def nodes(self) -> int:
        return len(self.graph.nodes)

    def _size_for(self, c: int, b: int) -> int:
        """Members of class c that are not the origin, for a prefix of class b."""
        return self.enc.sizes[c] - (c == b)

    def _held_pairs(self) -> Iterator[tuple[int, int, int]]:
        """(class, origin class, pairs it stands for) for every held class-level pair."""
        sizes = self.enc.sizes
        for c, held in enumerate(self.held):
            for b in bit_indices(held):
                weight = sizes[b] * self._size_for(c, b)
                if weight:
                    yield c, b, weight

    def _min_cl_of(self, c: int, b: int) -> int:
        for length, origins in self.min_cl[c]:
            if origins >> b & 1:
                return length
        raise AssertionError("held pair without a path")

    def _diversity_of(self, c: int, b: int) -> int:
        k = len(self.enc.sizes)
        total = 0
        for d, origins in self.heard[c]:
            if origins >> b & 1:
                total += 1 if d >= k else self._size_for(d, b) - (d == c)
        return total

    @property
    def missing_pairs(self) -> int:
        sizes = self.enc.sizes
        total = 0
        for c, held in enumerate(self.held):
            for b, n_b in enumerate(sizes):
                if n_b and not held >> b & 1:
                    total += n_b * self._size_for(c, b)
        return total

    @property
    def held_pairs(self) -> int:
        return sum(w for _, _, w in self._held_pairs())

    @property
    def max_cluster_list(self) -> int:
        return max((self._min_cl_of(c, b) for c, b, _ in self._held_pairs()), default=0)

    @property
    def diversity_min(self) -> int:
        return min((self._diversity_of(c, b) for c, b, _ in self._held_pairs()), default=0)

    @property
    def diversity_sum(self) -> int:
        return sum(w * self._diversity_of(c, b) for c, b, w in self._held_pairs())

    def _pair(self, node: int, origin: int) -> tuple[int, int] | None:
        if node == origin:
            return None
        c, b = self.graph.node_class[node], self.graph.node_class[origin]
        return (c, b) if self.held[c] >> b & 1 else None

    def min_cluster_list(self, node: int, origin: int) -> int | None:
        pair = self._pair(node, origin)
        return None if pair is None else self._min_cl_of(*pair)

    def diversity(self, node: int, origin: int) -> int | None:
        pair = self._pair(node, origin)
        return None if pair is None else self._diversity_of(*pair)

    def missing_examples(self, limit: int) -> list[tuple[int, int]]:
        if limit <= 0:
            return []
        sizes = self.enc.sizes
        lacking = [
            [b for b, n in enumerate(sizes) if n and not held >> b & 1] for held in self.held
        ]
        out: list[tuple[int, int]] = []
        for x, c in enumerate(self.graph.node_class):
            if not lacking[c]:
                continue
            origins = sorted(o for b in lacking[c] for o in self.graph.classes[b].members if o != x)
            out.extend((x, o) for o in origins)
            if len(out) >= limit:
                return out[:limit]
        return out

    def lacking_nodes(self) -> list[int]:
        """Indices of the nodes that miss at least one other node's prefix, ascending."""
        sizes = self.enc.sizes
        short = {
            c
            for c, held in enumerate(self.held)
            if any(n and not held >> b & 1 and self._size_for(c, b) for b, n in enumerate(sizes))
        }
        return [x for x, c in enumerate(self.graph.node_class) if c in short]

    # -- UPDATE counts -------------------------------------------------------

    def _count(self, c: int, e: int) -> int:
        """Prefixes a member of class c advertises to a member of class e (a session)."""
        assert self.adv is not None and self.adv_origin is not None
        sizes = self.enc.sizes
        adv = self.adv[c].get(e, 0)
        total = 1  # the sender's own prefix goes to every peer
        for b, n_b in enumerate(sizes):
            n_other = n_b - (c == b) - (e == b)  # origins in b other than the two ends
            if n_other > 0 and adv >> b & 1:
                total += n_other
        if self.adv_origin[c] >> e & 1:
            total += 1  # the receiver's own prefix, sent back by another path
        return total

    def _sessions(self) -> list[tuple[int, int, int]]:
        """Directed class sessions (c, e, number of directed node sessions)."""
        sizes = self.enc.sizes
        out = []
        for c, row in enumerate(self.enc.adj):
            for e, _ in row:
                mult = sizes[c] * (sizes[e] - (c == e))
                if mult > 0:
                    out.append((c, e, mult))
        return out

    def updates(self, u: int, v: int) -> int | None:
        if self.adv is None or self.graph.kind(u, v) is None:
            return None
        return self._count(self.graph.node_class[u], self.graph.node_class[v])

    def session_updates(self) -> dict[int, int]:
        hist: dict[int, int] = {}
        if self.adv is None:
            return hist
        for c, e, mult in self._sessions():
            count = self._count(c, e)
            hist[count] = hist.get(count, 0) + mult
        return hist

    def rr_updates(self) -> dict[int, int]:
        if self.adv is None:
            return {}
        received = [0] * len(self.enc.sizes)
        for c, e, _ in self._sessions():
            # each member of e receives from every member of c other than itself
            received[e] += self._count(c, e) * (self.enc.sizes[c] - (c == e))
        return {
            x: received[c] for x, c in enumerate(self.graph.node_class) if self.enc.cluster_bit[c]
        }
