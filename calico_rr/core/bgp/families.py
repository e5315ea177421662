"""Address families: IPv4 and IPv6 BGP, read from one set of resources (pure).

calico-node runs two BGP daemons from the same Calico resources: BIRD for IPv4
(``bird.cfg``) and bird6 for IPv6 (``bird6.cfg``).  A node takes part in a
family when it has an address of that family (``ip`` / ``ip6``); the BGPPeers,
the mesh setting and an RR's cluster ID apply to both; a BGPPeer with a
``peerIP`` is rendered only into the config of the peerIP's family (domain.md
section 2).

So the IPv6 session graph is the IPv4 machinery run on a *projection*:
:func:`project` puts each node's address of the family in ``ip`` (None without
one: the node is the graph's ``no_ip`` in that family) and keeps the BGPPeers
that family's config would hold.  ``build_session_graph(project(state, f))`` is
then the family's session graph, and the verifier runs unchanged on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Final, Literal

from calico_rr.model import ANN_IPV4, ANN_IPV6, BGPPeer, CalicoNode, CalicoState, Node

Family = Literal["ipv4", "ipv6"]

#: Every family, in the order reports list them.
FAMILIES: Final[tuple[Family, ...]] = ("ipv4", "ipv6")

_LABELS: Mapping[str, str] = {"ipv4": "IPv4", "ipv6": "IPv6"}


def family_label(family: str) -> str:
    """``IPv4`` / ``IPv6``: how people write the families."""
    return _LABELS.get(family, family)


def family_of_address(address: str) -> Family:
    """The family of a normalised address (an IPv6 one always holds a colon)."""
    return "ipv6" if ":" in address else "ipv4"


def _address(node: CalicoNode | Node, family: Family) -> str | None:
    return node.ip if family == "ipv4" else node.ip6


def families_of_nodes(nodes: Sequence[CalicoNode | Node]) -> tuple[Family, ...]:
    """The families some node has an address of, in :data:`FAMILIES` order."""
    return tuple(f for f in FAMILIES if any(_address(n, f) is not None for n in nodes))


def families_present(state: CalicoState) -> tuple[Family, ...]:
    """The families the cluster runs BGP in.  A cluster with no address at all is
    read as IPv4 (what calico-rr checked before it knew IPv6): its report then says
    that no node has an address, as it always did."""
    return families_of_nodes(state.nodes) or ("ipv4",)


def missing_families(node: CalicoNode | Node, families: tuple[Family, ...]) -> tuple[Family, ...]:
    """The families among ``families`` that ``node`` has no address of."""
    return tuple(f for f in families if _address(node, f) is None)


def _peer_in_family(peer: BGPPeer, family: Family) -> bool:
    # A peerIP peering is written only into the daemon of the peerIP's family;
    # a selector peering is written into both (each uses the peer's own address).
    return peer.peer_ip is None or family_of_address(peer.peer_ip) == family


def project(state: CalicoState, family: Family) -> CalicoState:
    """``state`` as the ``family`` daemon sees it: ``ip`` is each node's address of
    that family (None: the node has none), ``ip6`` is cleared, and only BGPPeers
    that family's config holds are kept.  ``project(state, "ipv4")`` of a state
    without IPv6 addresses or IPv6 peerIPs is ``state`` itself."""
    if family == "ipv4":
        if all(n.ip6 is None for n in state.nodes) and all(
            _peer_in_family(p, family) for p in state.peers
        ):
            return state
        nodes = tuple(dataclasses.replace(n, ip6=None) for n in state.nodes)
    else:
        nodes = tuple(dataclasses.replace(n, ip=n.ip6, ip6=None) for n in state.nodes)
    peers = tuple(p for p in state.peers if _peer_in_family(p, family))
    return dataclasses.replace(state, nodes=nodes, peers=peers)


def address_annotations(node: Node, annotations: Mapping[str, str]) -> dict[str, str]:
    """``annotations`` plus the KDD address annotations calico-node would have set
    for ``node``'s addresses (host prefixes) where they are missing: how a node
    whose address came from an ``InternalIP`` or a Calico Node is shown to
    calico-node's reading (``core.bgp.resources``)."""
    out = dict(annotations)
    if node.ip is not None and ANN_IPV4 not in out:
        out[ANN_IPV4] = f"{node.ip}/32"
    if node.ip6 is not None and ANN_IPV6 not in out:
        out[ANN_IPV6] = f"{node.ip6}/128"
    return out
