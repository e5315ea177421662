"""Twin BGP protocols: two protocols on one node to the same neighbor (pure).

With the node-to-node mesh on, confd renders a ``Mesh_<ip>`` protocol to every
other non-RR node, and, independently, a ``Node_<ip>`` (or ``Global_<ip>``)
protocol for every BGPPeer that selects that node.  When a BGPPeer selects a pair
the mesh already covers, each end holds two protocols to one address (seen in the
lab with Calico v3.28's own templates; docs/LAB.md "Twin protocols").

BIRD 1.6 runs one of them: both take a lock on the neighbor address, and the
second waits in Idle.  An incoming connection is handed to the *first* protocol
in the configuration with that neighbor address, and refused while that one is
the waiting twin (BIRD's ``bgp_incoming_connection``).  When, on both ends, the
running twin is the second in ``bird.cfg`` (it can be after a reconfiguration,
e.g. the mesh turned on over BGPPeers that were up, the lab's random
configuration 51 then 52), every connection is refused and the pair stays down
for good, while the verifier counts the pair as a session.  After a cold start
the protocols take the lock in file order, the first one runs, and the pair
comes up (measured: the same configurations converge on freshly started BIRDs).

Only pairs with twins on *both* ends can lock out: with one end holding a single
protocol, the other's running twin connects to it and is accepted.  Those pairs
are exactly the sessions the BGPPeers alone would bring up between two non-RR
nodes, which is how :func:`twin_pairs` finds them (on the class graph, cheap at
any size).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from calico_rr.core.bgp.families import families_present, project
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.model import CalicoState


@dataclass(frozen=True, slots=True)
class TwinPairs:
    """Node pairs whose both ends render two BGP protocols to each other."""

    count: int
    examples: tuple[tuple[str, str], ...]  # (node, node), names sorted in each pair
    #: the count per address family (only families with twins; empty when none)
    by_family: Mapping[str, int] = field(default_factory=dict)


def twin_pairs(state: CalicoState, *, examples: int = 5) -> TwinPairs:
    """The pairs of nodes with twin protocols on both ends under ``state``, in every
    family: confd renders the same Mesh_ and Node_ protocols into bird6.cfg (IPv6
    addresses), and bird6 is BIRD 1.6 too, so a pair can lock out in each family
    on its own.  ``count`` adds the families up (each is a session of its own)."""
    if not state.config.mesh_enabled:
        return TwinPairs(0, ())
    count = 0
    found: set[tuple[str, str]] = set()
    by_family: dict[str, int] = {}
    for family in families_present(state):
        n, pairs = _family_twins(project(state, family), examples)
        if n:
            by_family[family] = n
            count += n
            found.update(pairs)
    return TwinPairs(count, tuple(sorted(found)[:examples]), by_family)


def _family_twins(state: CalicoState, examples: int) -> tuple[int, list[tuple[str, str]]]:
    # The sessions the BGPPeers bring up on their own: both ends configure the
    # other by a BGPPeer, so both render a Node_/Global_ protocol beside Mesh_.
    graph = build_session_graph(replace(state, config=replace(state.config, mesh_enabled=False)))
    names = [n.name for n in graph.nodes]
    count = 0
    found: list[tuple[str, str]] = []
    for c, row in enumerate(graph.adj):
        mine = graph.classes[c]
        if mine.cluster_id is not None:
            continue  # an RR takes no part in the mesh: no Mesh_ protocol
        for d in sorted(row):
            theirs = graph.classes[d]
            if d < c or theirs.cluster_id is not None:
                continue
            m, k = len(mine.members), len(theirs.members)
            count += m * (m - 1) // 2 if c == d else m * k
            if len(found) < examples:
                a = mine.members[0]
                b = mine.members[1] if c == d else theirs.members[0]
                found.append((min(names[a], names[b]), max(names[a], names[b])))
    return count, found
