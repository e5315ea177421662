"""Is a cluster state safe right now?  Used on every intermediate state of a change.

Where the verifier answers "is this layout right, and does it survive failures",
this module answers the operator's question at each write: with the nodes that
are down removed, does every running node still get a route to every other one,
and does every node still have a peering (with an RR, or the mesh)?  Pure: it
reads Calico documents (nodes as calico-node sees them, BGPPeers,
BGPConfiguration) like the verifier does.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from calico_rr.core.resources import parse_resources
from calico_rr.core.sessions import build_session_graph
from calico_rr.core.verify import fast


@dataclass(frozen=True, slots=True)
class Safety:
    nodes: int
    missing_pairs: int
    #: running nodes with no BGP session at all
    isolated: tuple[str, ...]
    #: running nodes whose only sessions are to nodes that are down
    examples: tuple[tuple[str, str], ...]

    @property
    def ok(self) -> bool:
        return self.missing_pairs == 0 and not self.isolated

    def describe(self) -> str:
        if self.ok:
            return f"safe: {self.nodes} running nodes all reach each other"
        parts = [f"{self.missing_pairs} missing (node, prefix) pairs"]
        if self.isolated:
            parts.append(f"isolated: {', '.join(self.isolated[:5])}")
        if self.examples:
            parts.append(f"e.g. {self.examples[0][0]} lacks {self.examples[0][1]}")
        return "; ".join(parts)


def check(docs: Iterable[Any], down: Collection[str] = ()) -> Safety:
    """Reachability among the running nodes of the cluster described by ``docs``."""
    graph = build_session_graph(parse_resources(docs, where="cluster").state)
    index = graph.index()
    removed = [index[n] for n in down if n in index]
    live = graph.without(removed) if removed else graph
    result = fast.propagate(live, updates=False)
    names = [n.name for n in live.nodes]
    isolated = tuple(
        names[i] for i in range(len(live.nodes)) if len(live.nodes) > 1 and live.degree(i) == 0
    )
    return Safety(
        nodes=len(live.nodes),
        missing_pairs=result.missing_pairs,
        isolated=isolated,
        examples=tuple((names[x], names[o]) for x, o in result.missing_examples(3)),
    )
