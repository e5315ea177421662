"""The BGP session graph, built from Calico resources the way calico-node builds it.

This module defines the graph's data types.  ``build_session_graph`` turns a
:class:`~calico_rr.model.CalicoState` into a :class:`SessionGraph` following
domain.md section 2: the node-to-node mesh rule, BGPPeer selectors, reverse
peerings, dedupe by (local node, peer IP), and the per-side session kind.

Symmetry.  Nodes that match exactly the same selectors, carry the same cluster ID
and AS number, and take the same part in the mesh are interchangeable: calico-node
gives them the same peerings.  The graph therefore groups nodes into *classes*
and stores adjacency between classes.  A class peering with itself means every
member peers with every *other* member (a node never peers with itself).  Nodes
named by a BGPPeer's ``node`` field, or addressed by a ``peerIP``, are put in a
class of their own so that class-level adjacency stays exact.  This keeps a
5000-node full mesh at a few classes instead of 12.5 million edges.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum

from calico_rr.core.bgp.families import family_label, family_of_address
from calico_rr.core.bgp.selector import (
    All,
    Compare,
    Has,
    InSet,
    Matcher,
    Selector,
    SelectorError,
    parse_selector,
)
from calico_rr.errors import InputError
from calico_rr.model import BGPPeer, CalicoNode, CalicoState, ReversePeering

#: ``SessionGraph.half_open`` keeps at most this many entries.  One misconfigured
#: BGPPeer (e.g. ``reversePeering: Manual`` from 5000 clients to 3 RRs) can make
#: thousands; a report needs examples, not all of them, and the verifier must stay
#: O(classes^2) rather than O(nodes^2).
HALF_OPEN_LIMIT = 1000


class SessionKind(str, Enum):  # noqa: UP042 - shared type, kept as defined
    """How the *local* side of a session is configured in BIRD (domain.md section 2)."""

    #: Plain iBGP: no ``rr client`` on this side.
    IBGP = "ibgp"
    #: This side is a route reflector and treats the peer as its client
    #: (``rr client; rr cluster id X``): the local node has cluster ID X and the
    #: peer's cluster ID differs from X (none, or another one).
    RR_CLIENT = "rr-client"
    #: Different AS numbers: eBGP, no reflection rules apply.
    EBGP = "ebgp"


@dataclass(frozen=True, slots=True)
class NodeClass:
    """Interchangeable nodes (same selector matches, cluster ID, ASN, mesh role)."""

    members: tuple[int, ...]  # node indices into SessionGraph.nodes, ascending
    cluster_id: str | None
    asn: int


@dataclass(frozen=True, slots=True)
class ExternalPeering:
    """A peering from Calico nodes to an address that is not a Calico node."""

    bgppeer: str  # BGPPeer name
    peer_ip: str
    asn: int | None
    local_nodes: int  # how many Calico nodes configure it


@dataclass(frozen=True, slots=True)
class HalfOpen:
    """A peering configured on one side only (it never reaches Established).

    Happens with ``reversePeering: Manual`` and no matching reverse BGPPeer, or a
    ``peerIP`` that points at a Calico node which does not peer back.
    """

    local: int  # node index
    peer: int  # node index
    bgppeer: str


@dataclass(frozen=True, slots=True)
class SessionGraph:
    """Established-capable BGP sessions between Calico nodes.

    ``nodes`` holds every node that runs BGP (has an address in ``ip``: IPv4, or
    the family ``core.bgp.families.project`` put there), sorted by name; indices
    everywhere refer to this tuple.  ``adj[c]`` maps a peer class ``d`` to the kind
    of the session *on c's side*; ``d in adj[c]`` iff ``c in adj[d]`` (sessions
    need both ends configured).  ``c in adj[c]`` means
    the members of ``c`` peer with each other.
    """

    nodes: tuple[CalicoNode, ...]
    node_class: tuple[int, ...]
    classes: tuple[NodeClass, ...]
    adj: tuple[Mapping[int, SessionKind], ...]
    external: tuple[ExternalPeering, ...] = ()
    half_open: tuple[HalfOpen, ...] = ()
    #: Nodes present in the input but without an address in ``ip`` (no BGP in this family).
    no_ip: tuple[str, ...] = ()

    # -- per-node views (derived from the class graph; cheap) ------------------

    def index(self) -> dict[str, int]:
        return {n.name: i for i, n in enumerate(self.nodes)}

    def peers(self, node: int) -> Iterator[int]:
        """Every node that ``node`` has a session with."""
        c = self.node_class[node]
        for d in self.adj[c]:
            for m in self.classes[d].members:
                if m != node:
                    yield m

    def kind(self, local: int, peer: int) -> SessionKind | None:
        """The session kind on ``local``'s side, or None when there is no session."""
        if local == peer:
            return None
        return self.adj[self.node_class[local]].get(self.node_class[peer])

    def degree(self, node: int) -> int:
        """Number of sessions of ``node``."""
        c = self.node_class[node]
        return sum(len(self.classes[d].members) - (d == c) for d in self.adj[c])

    def total_sessions(self) -> int:
        """Number of distinct sessions (each counted once)."""
        twice = sum(
            len(cls.members) * (len(self.classes[d].members) - (d == c))
            for c, cls in enumerate(self.classes)
            for d in self.adj[c]
        )
        return twice // 2

    def is_rr(self, node: int) -> bool:
        return self.nodes[node].cluster_id is not None

    # -- failure simulation ------------------------------------------------------

    def without(self, removed: Iterable[int]) -> SessionGraph:
        """This graph with the nodes ``removed`` gone, as if they had failed.

        Computed from the class structure alone (no selector is evaluated): a
        node's peerings depend only on its own labels, IP, cluster ID and ASN and on
        the BGPPeers, never on which *other* nodes exist, so the surviving nodes keep
        their classes and class adjacency.

        Renumbering: surviving nodes keep their relative (name) order and are
        re-indexed ``0..n-1``; classes that become empty disappear, the rest are
        re-ordered by their new first member, exactly as :func:`build_session_graph`
        orders them.  A class left with a single member loses its self-loop (a node
        never peers with itself).  ``half_open`` entries that involve a removed node
        are dropped and the others renumbered.  ``external`` and ``no_ip`` are kept
        as they are: a failed node is still registered in the datastore, so a
        ``peerIP`` naming it still addresses a Calico node (whose sessions are down),
        not an outside router; and ``ExternalPeering.local_nodes`` keeps counting the
        nodes that *configure* the peering, failed or not.
        """
        gone = set(removed)
        n = len(self.nodes)
        for i in gone:
            if not 0 <= i < n:
                raise IndexError(f"node index {i} out of range 0..{n - 1}")
        if not gone:
            return self
        new_index = [-1] * n
        nodes: list[CalicoNode] = []
        for i, node in enumerate(self.nodes):
            if i not in gone:
                new_index[i] = len(nodes)
                nodes.append(node)
        classes, adj = self._surviving_classes(new_index)
        node_class = [0] * len(nodes)
        for new_c, cls2 in enumerate(classes):
            for m in cls2.members:
                node_class[m] = new_c
        half_open = tuple(
            HalfOpen(new_index[h.local], new_index[h.peer], h.bgppeer)
            for h in self.half_open
            if new_index[h.local] >= 0 and new_index[h.peer] >= 0
        )
        return SessionGraph(
            nodes=tuple(nodes),
            node_class=tuple(node_class),
            classes=tuple(classes),
            adj=tuple(adj),
            external=self.external,
            half_open=half_open,
            no_ip=self.no_ip,
        )

    def _surviving_classes(
        self, new_index: list[int]
    ) -> tuple[list[NodeClass], list[dict[int, SessionKind]]]:
        """The classes left with members under ``new_index`` (old node index -> new,
        -1 if gone), renumbered as :meth:`without` describes, and their adjacency."""
        kept: list[tuple[int, tuple[int, ...]]] = []  # (old class, new members)
        for c, cls in enumerate(self.classes):
            members = tuple(new_index[m] for m in cls.members if new_index[m] >= 0)
            if members:
                kept.append((c, members))
        kept.sort(key=lambda item: item[1][0])
        class_map = {old: new for new, (old, _) in enumerate(kept)}
        classes: list[NodeClass] = []
        adj: list[dict[int, SessionKind]] = []
        for old, members in kept:
            cls = self.classes[old]
            classes.append(NodeClass(members, cls.cluster_id, cls.asn))
            row: dict[int, SessionKind] = {}
            for d in sorted(self.adj[old], key=lambda k: class_map.get(k, -1)):
                new_d = class_map.get(d)
                if new_d is None or (d == old and len(members) < 2):
                    continue
                row[new_d] = self.adj[old][d]
            adj.append(row)
        return classes, adj


# ---------------------------------------------------------------------------
# Building the graph (domain.md section 2)
# ---------------------------------------------------------------------------


def session_kind(
    local_asn: int, local_cid: str | None, peer_asn: int, peer_cid: str | None
) -> SessionKind:
    """The BIRD configuration on the local side, as calico-node's template writes it.

    Different AS: eBGP.  Same AS and the local node is an RR (cluster ID X) while the
    peer's cluster ID differs from X (none, or another ID): ``rr client`` (RFC 4456
    section 6; calico-node compares the two cluster IDs).  Otherwise plain iBGP.
    """
    if local_asn != peer_asn:
        return SessionKind.EBGP
    if local_cid is not None and peer_cid != local_cid:
        return SessionKind.RR_CLIENT
    return SessionKind.IBGP


def bit_indices(mask: int) -> Iterator[int]:
    """Indices of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _parse_peer_selector(peer: BGPPeer, field: str, text: str) -> Selector:
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise InputError(str(exc), obj=f"BGPPeer {peer.name}", field=field) from exc


class _LabelEvaluator:
    """Turns a node's labels into the bitmask of selectors it matches, memoised.

    Three tiers, cheapest first, because 50,000 nodes x 200 selectors evaluated
    naively is 10 million closure calls:

    * ``k == 'v'`` / ``k in {...}`` / ``has(k)`` selectors go into a per-key index
      (one dict lookup per key for all such selectors together; this is the shape of
      per-node ``kubernetes.io/hostname == 'x'`` selectors and of our own role labels);
    * ``all()`` sets its bit on every node;
    * anything else is evaluated once per distinct projection of the labels onto the
      keys it reads (selectors reading the same key set share one memo).
    """

    def __init__(self) -> None:
        self.always = 0
        self._value_index: dict[str, dict[str, int]] = {}
        self._has_index: dict[str, int] = {}
        self._groups: dict[tuple[str, ...], list[tuple[int, Matcher]]] = {}
        self._keys: tuple[str, ...] = ()
        self._compiled: list[
            tuple[tuple[str, ...], list[tuple[int, Matcher]], dict[tuple[str | None, ...], int]]
        ] = []

    def add(self, bit: int, selector: Selector) -> None:
        expr = selector.expr
        if isinstance(expr, All):
            self.always |= bit
        elif isinstance(expr, Compare) and expr.op == "==":
            by_value = self._value_index.setdefault(expr.key, {})
            by_value[expr.value] = by_value.get(expr.value, 0) | bit
        elif isinstance(expr, InSet) and not expr.negated:
            by_value = self._value_index.setdefault(expr.key, {})
            for value in expr.values:
                by_value[value] = by_value.get(value, 0) | bit
        elif isinstance(expr, Has):
            self._has_index[expr.key] = self._has_index.get(expr.key, 0) | bit
        else:
            group = tuple(sorted(selector.keys))
            self._groups.setdefault(group, []).append((bit, selector.matches))

    def freeze(self) -> None:
        self._keys = tuple(sorted(set(self._value_index) | set(self._has_index)))
        for key in self._keys:
            self._value_index.setdefault(key, {})
            self._has_index.setdefault(key, 0)
        self._compiled = [(keys, sels, {}) for keys, sels in self._groups.items()]

    def mask(self, labels: Mapping[str, str]) -> int:
        mask = self.always
        if self._keys:
            value_index, has_index = self._value_index, self._has_index
            for key in self._keys:
                value = labels.get(key)
                if value is not None:
                    mask |= has_index[key] | value_index[key].get(value, 0)
        for keys, sels, memo in self._compiled:
            proj = tuple([labels.get(k) for k in keys])
            got = memo.get(proj)
            if got is None:
                got = 0
                for bit, matches in sels:
                    if matches(labels):
                        got |= bit
                memo[proj] = got
            mask |= got
        return mask


def _split_nodes(
    state: CalicoState,
) -> tuple[list[CalicoNode], tuple[str, ...]]:
    """BGP nodes sorted by name, and the names of nodes without an address (of the
    family being checked: ``core.bgp.families.project`` puts it in ``ip``)."""
    seen: set[str] = set()
    by_ip: dict[str, str] = {}
    bgp: list[CalicoNode] = []
    no_ip: list[str] = []
    for node in state.nodes:
        if node.name in seen:
            raise InputError("duplicate node name", obj=f"Node {node.name}", field="name")
        seen.add(node.name)
        if node.ip is None:
            no_ip.append(node.name)
            continue
        other = by_ip.get(node.ip)
        if other is not None:
            # calico-node refuses to start on an address another node already uses.
            family = family_label(family_of_address(node.ip))
            raise InputError(
                f"{family} address {node.ip} is also used by node {other}",
                obj=f"Node {node.name}",
                field="ip",
            )
        by_ip[node.ip] = node.name
        bgp.append(node)
    bgp.sort(key=lambda n: n.name)
    no_ip.sort()
    return bgp, tuple(no_ip)


def build_session_graph(state: CalicoState) -> SessionGraph:
    """The BGP sessions calico-node would bring up for ``state`` (domain.md section 2).

    Bit layout: for BGPPeer ``j`` (in ``state.peers`` order), bit ``j`` of a node's
    mask says "this node is on the local side of peer j" (its ``node``, its
    ``nodeSelector``, or every node when neither is set) and bit ``P + j`` (``P`` =
    number of BGPPeers) says "this node is on the remote side" (matches its
    ``peerSelector``, or owns its ``peerIP``).  Nodes with the same mask, cluster ID,
    ASN (and, if named by ``node`` or addressed by ``peerIP``, the same name) form
    one class; class adjacency then follows from the masks alone.

    Node A *configures* B when: both are in the mesh (mesh on, neither has a
    cluster ID); or some peer j has A local and B remote; or some selector peer j
    with ``reversePeering: Auto`` has B local and A remote (calico-node adds the
    reverse peering on the selected node).  A session exists iff A configures B
    and B configures A; one-sided configurations go to ``half_open`` (at most
    :data:`HALF_OPEN_LIMIT` entries, sorted by (local, peer); if more exist,
    which ones are kept is deterministic but unspecified).  Peerings are keyed by
    (local node, peer IP), so several rules yielding the same pair collapse into
    one session.
    """
    nodes, no_ip = _split_nodes(state)
    peers = state.peers
    default_asn = state.default_asn()
    rules = _peer_rules(peers)
    classes = _group_nodes(nodes, rules, default_asn)
    local_classes, configures = _configures(
        classes, len(peers), rules.auto_reverse, state.config.mesh_enabled
    )
    adj, one_sided = _sessions(classes, configures)
    return SessionGraph(
        nodes=tuple(nodes),
        node_class=tuple(classes.node_class),
        classes=tuple(
            NodeClass(tuple(members), cid, asn)
            for members, cid, asn in zip(classes.members, classes.cid, classes.asn, strict=True)
        ),
        adj=tuple(adj),
        external=_external(nodes, peers, local_classes, classes.members),
        half_open=_half_open(peers, classes, one_sided, rules.auto_reverse),
        no_ip=no_ip,
    )


@dataclass(frozen=True, slots=True)
class _PeerRules:
    """The BGPPeers as mask bits (see :func:`build_session_graph` for the layout)."""

    evaluator: _LabelEvaluator  # selector bits (and always-set bits) from labels
    named: dict[str, int]  # node name -> local bits of BGPPeers naming it in ``node``
    targeted: dict[str, int]  # peer IP -> remote bits of BGPPeers using it as peerIP
    auto_reverse: int  # local-space bits of selector peers with reversePeering Auto


def _peer_rules(peers: tuple[BGPPeer, ...]) -> _PeerRules:
    """Check every BGPPeer and compile it into mask bits."""
    n_peers = len(peers)
    evaluator = _LabelEvaluator()
    named: dict[str, int] = {}
    targeted: dict[str, int] = {}
    auto_reverse = 0
    for j, peer in enumerate(peers):
        local_bit = 1 << j
        remote_bit = 1 << (n_peers + j)
        obj = f"BGPPeer {peer.name}"
        # calico-node treats an empty string as "not set" for every one of these fields.
        if peer.node and peer.node_selector:
            raise InputError("node and nodeSelector are both set", obj=obj, field="nodeSelector")
        if peer.peer_ip and peer.peer_selector:
            raise InputError("peerIP and peerSelector are both set", obj=obj, field="peerSelector")
        if peer.node:
            named[peer.node] = named.get(peer.node, 0) | local_bit
        elif peer.node_selector:
            evaluator.add(local_bit, _parse_peer_selector(peer, "nodeSelector", peer.node_selector))
        else:
            evaluator.always |= local_bit  # neither set: every node is local
        if peer.peer_selector:
            sel = _parse_peer_selector(peer, "peerSelector", peer.peer_selector)
            evaluator.add(remote_bit, sel)
            if peer.reverse_peering is not ReversePeering.MANUAL:
                auto_reverse |= local_bit
        elif peer.peer_ip:
            targeted[peer.peer_ip] = targeted.get(peer.peer_ip, 0) | remote_bit
        else:
            raise InputError("neither peerIP nor peerSelector is set", obj=obj, field="peerIP")
    evaluator.freeze()
    return _PeerRules(evaluator, named, targeted, auto_reverse)


@dataclass(slots=True)
class _Classes:
    """Node classes under construction, indexed by class (see the module docstring)."""

    masks: list[int] = field(default_factory=list)
    members: list[list[int]] = field(default_factory=list)
    cid: list[str | None] = field(default_factory=list)
    asn: list[int] = field(default_factory=list)
    node_class: list[int] = field(default_factory=list)  # node index -> class


def _group_nodes(nodes: list[CalicoNode], rules: _PeerRules, default_asn: int) -> _Classes:
    """Nodes with the same mask, cluster ID, ASN (and, if a rule addresses them
    directly, name) form one class, numbered in order of their first member."""
    classes = _Classes()
    class_of_key: dict[tuple[int, str | None, int, str | None], int] = {}
    mask_of, named, targeted = rules.evaluator.mask, rules.named, rules.targeted
    for i, node in enumerate(nodes):
        name, ip = node.name, node.ip
        assert ip is not None  # _split_nodes keeps only nodes with an address
        mask = mask_of(node.labels)
        special: str | None = None
        extra = named.get(name, 0) | targeted.get(ip, 0)
        if extra:
            mask |= extra
            special = name  # own class: rules address this very node
        asn = node.asn if node.asn is not None else default_asn
        key = (mask, node.cluster_id, asn, special)
        c = class_of_key.get(key)
        if c is None:
            c = len(classes.masks)
            class_of_key[key] = c
            classes.masks.append(mask)
            classes.members.append([])
            classes.cid.append(node.cluster_id)
            classes.asn.append(asn)
        classes.members[c].append(i)
        classes.node_class.append(c)
    return classes


def _configures(
    classes: _Classes, n_peers: int, auto_reverse: int, mesh_on: bool
) -> tuple[list[list[int]], list[set[int]]]:
    """Per BGPPeer, the classes on its local side; and per class, the classes its
    members configure a peering with."""
    local_all = (1 << n_peers) - 1
    local_classes: list[list[int]] = [[] for _ in range(n_peers)]
    remote_classes: list[list[int]] = [[] for _ in range(n_peers)]
    for c, mask in enumerate(classes.masks):
        for j in bit_indices(mask & local_all):
            local_classes[j].append(c)
        for j in bit_indices(mask >> n_peers):
            remote_classes[j].append(c)
    # Mesh: nodes with a cluster ID take no part (calico-node's template skips them).
    mesh = [c for c, cid in enumerate(classes.cid) if mesh_on and cid is None]
    configures: list[set[int]] = []
    for c, mask in enumerate(classes.masks):
        out: set[int] = set()
        if mesh_on and classes.cid[c] is None:
            out.update(mesh)
        for j in bit_indices(mask & local_all):
            out.update(remote_classes[j])
        for j in bit_indices((mask >> n_peers) & auto_reverse):
            out.update(local_classes[j])  # reverse peering added on the selected node
        configures.append(out)
    return local_classes, configures


def _sessions(
    classes: _Classes, configures: list[set[int]]
) -> tuple[list[dict[int, SessionKind]], list[tuple[int, int]]]:
    """Class adjacency (peerings configured on both sides, with the kind on each
    side), and the one-sided (local class, peer class) configurations."""
    adj: list[dict[int, SessionKind]] = []
    one_sided: list[tuple[int, int]] = []
    cid, asn = classes.cid, classes.asn
    for c, wanted in enumerate(configures):
        row: dict[int, SessionKind] = {}
        for d in sorted(wanted):
            if c not in configures[d]:
                one_sided.append((c, d))
                continue
            if d == c and len(classes.members[c]) < 2:
                continue  # a node never peers with itself
            row[d] = session_kind(asn[c], cid[c], asn[d], cid[d])
        adj.append(row)
    return adj, one_sided


def _half_open(
    peers: tuple[BGPPeer, ...],
    classes: _Classes,
    one_sided: list[tuple[int, int]],
    auto_reverse: int,
) -> tuple[HalfOpen, ...]:
    """Node-level examples of the one-sided class configurations (at most
    :data:`HALF_OPEN_LIMIT`), each naming the BGPPeer responsible."""
    n_peers = len(peers)
    local_all = (1 << n_peers) - 1
    class_masks, class_members = classes.masks, classes.members
    found: list[HalfOpen] = []
    for c, d in one_sided:
        # Name the BGPPeer responsible: a forward rule c -> d, else a reverse one.
        why = class_masks[c] & (class_masks[d] >> n_peers) & local_all
        if not why:
            why = class_masks[d] & (class_masks[c] >> n_peers) & auto_reverse
        name = peers[next(bit_indices(why))].name
        pairs = (HalfOpen(a, b, name) for a in class_members[c] for b in class_members[d] if a != b)
        found.extend(itertools.islice(pairs, HALF_OPEN_LIMIT - len(found)))
        if len(found) >= HALF_OPEN_LIMIT:
            break
    return tuple(sorted(found, key=lambda h: (h.local, h.peer)))


def _external(
    nodes: list[CalicoNode],
    peers: tuple[BGPPeer, ...],
    local_classes: list[list[int]],
    class_members: list[list[int]],
) -> tuple[ExternalPeering, ...]:
    """BGPPeers whose peerIP is not a Calico node's address (e.g. a ToR router)."""
    node_ips = {n.ip for n in nodes}
    out: list[ExternalPeering] = []
    for j, peer in enumerate(peers):
        if peer.peer_selector or not peer.peer_ip or peer.peer_ip in node_ips:
            continue
        local_nodes = sum(len(class_members[c]) for c in local_classes[j])
        out.append(ExternalPeering(peer.name, peer.peer_ip, peer.as_number, local_nodes))
    return tuple(out)
