"""What the BGP lab compares: the verifier's prediction against what BIRD holds.

Pure: the session graph and observations in, comparisons out.  The lab adapter
(``calico_rr.adapters.lab``) collects the observations from real BIRD daemons.

* :func:`expected_sessions` — the sessions calico-node would configure (one per
  pair of nodes), from the session graph;
* :func:`predicted_routes` — for every node, the origins whose pod block it holds
  in its BGP table according to the exact verifier engine (domain.md 3: what a
  node *holds*, which for a route reflector can be more than what it passes on);
* :func:`compare_routes` — node by node, the pairs where BIRD and the verifier differ.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.bgp.verify.exact import propagate
from calico_rr.core.bgp.verify.fast import propagate as fast_propagate


def expected_sessions(graph: SessionGraph) -> set[frozenset[str]]:
    """Every BGP session of ``graph`` as an unordered pair of node names."""
    out: set[frozenset[str]] = set()
    for i, node in enumerate(graph.nodes):
        for j in graph.peers(i):
            if i < j:
                out.add(frozenset((node.name, graph.nodes[j].name)))
    return out


def predicted_routes(
    graph: SessionGraph, origins: Collection[str] | None = None, *, fast: bool = False
) -> dict[str, frozenset[str]]:
    """Node name -> names of the other nodes whose block it holds (exact engine;
    ``fast``: the class engine, which answers the same and scales to thousands).
    ``origins``: the nodes that announce a block (default: all; a dedicated route
    reflector without workloads announces none)."""
    result = (fast_propagate if fast else propagate)(graph, updates=False)
    names = [n.name for n in graph.nodes]
    announce = set(names) if origins is None else set(origins)
    out: dict[str, frozenset[str]] = {}
    for v, name in enumerate(names):
        out[name] = frozenset(
            names[o]
            for o in range(len(names))
            if o != v and names[o] in announce and result.min_cluster_list(v, o) is not None
        )
    return out


def missing_pairs(
    held: Mapping[str, frozenset[str]],
    nodes: list[str],
    origins: Collection[str] | None = None,
) -> set[tuple[str, str]]:
    """(node, origin) pairs among ``nodes`` where ``node`` lacks ``origin``'s block
    (origins: those of ``nodes`` in ``origins``, default all)."""
    sources = nodes if origins is None else [o for o in nodes if o in set(origins)]
    return {(v, o) for v in nodes for o in sources if o != v and o not in held.get(v, frozenset())}


@dataclass(frozen=True, slots=True)
class LabComparison:
    """BIRD's tables against the verifier, over the nodes both know."""

    nodes: int
    #: (node, origin) pairs the verifier says are missing / BIRD shows missing
    predicted_missing: frozenset[tuple[str, str]]
    observed_missing: frozenset[tuple[str, str]]
    #: pairs where the two disagree, each side's view
    only_bird_holds: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    only_verifier_holds: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @property
    def matches(self) -> bool:
        return not self.only_bird_holds and not self.only_verifier_holds

    def describe(self, limit: int = 5) -> str:
        if self.matches:
            return (
                f"BIRD matches the verifier on {self.nodes} nodes "
                f"({len(self.observed_missing)} missing pairs on both sides)"
            )
        parts = []
        if self.only_verifier_holds:
            ex = sorted(self.only_verifier_holds)[:limit]
            parts.append(f"{len(self.only_verifier_holds)} pairs predicted but not in BIRD {ex}")
        if self.only_bird_holds:
            ex = sorted(self.only_bird_holds)[:limit]
            parts.append(f"{len(self.only_bird_holds)} pairs in BIRD but not predicted {ex}")
        return "; ".join(parts)


def compare_routes(
    predicted: Mapping[str, frozenset[str]],
    observed: Mapping[str, frozenset[str]],
    origins: Collection[str] | None = None,
) -> LabComparison:
    """Compare on the nodes of ``predicted`` (the BGP nodes of the graph), for
    the blocks of ``origins`` (default: every node announces one)."""
    nodes = sorted(predicted)
    known = set(nodes)
    obs = {v: observed.get(v, frozenset()) & known for v in nodes}
    pred_missing = missing_pairs(predicted, nodes, origins)
    obs_missing = missing_pairs(obs, nodes, origins)
    return LabComparison(
        nodes=len(nodes),
        predicted_missing=frozenset(pred_missing),
        observed_missing=frozenset(obs_missing),
        only_bird_holds=frozenset(pred_missing - obs_missing),
        only_verifier_holds=frozenset(obs_missing - pred_missing),
    )


@dataclass(frozen=True, slots=True)
class DaemonTargets:
    """What each node's BIRD shows once converged, by the verifier: counts the
    scale lab can read cheaply (``show protocols``, ``show route count``) and the
    held sets its one full check compares."""

    #: node -> BGP sessions Established
    sessions: dict[str, int]
    #: node -> prefixes in its table: the blocks it holds, its own, the lab's /16
    networks: dict[str, int]
    #: node -> the other nodes whose block it holds
    held: dict[str, frozenset[str]]


def daemon_targets(graph: SessionGraph) -> DaemonTargets:
    """:class:`DaemonTargets` for a lab where every node announces a pod block and
    its BIRD's table also holds the connected lab network (``core.lab.bird``)."""
    sessions = {n.name: graph.degree(i) for i, n in enumerate(graph.nodes)}
    held = predicted_routes(graph, fast=True)
    networks = {name: len(h) + 2 for name, h in held.items()}
    return DaemonTargets(sessions, networks, held)
