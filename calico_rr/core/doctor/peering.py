"""``calico-rr doctor``'s BGP topology checks (pure): the node-to-node mesh, route
reflector sessions and zones, and BGPPeers whose selectors select every node.

Each check reads a :class:`~calico_rr.core.doctor.findings.CheckView`; the sessions
are the ones calico-node would build (the view's session graph), and selectors are
evaluated on the BGP nodes' labels, not read off their text.
"""

from __future__ import annotations

from calico_rr.core.bgp.metrics import class_counts
from calico_rr.core.bgp.selector import parse_selector
from calico_rr.core.bgp.twins import twin_pairs
from calico_rr.core.bgp.verify.fanout import MAX_STATES, ROUTES_PER_NODE_BUDGET, reflected_fanout
from calico_rr.core.doctor.findings import (
    EXAMPLES,
    CheckView,
    Finding,
    Severity,
    examples,
    group_object,
    plural,
)
from calico_rr.core.doctor.inventory import Inventory
from calico_rr.errors import safe_repr
from calico_rr.model import ZONE_LABEL, BGPPeer

#: Above this many nodes in the node-to-node mesh, the mesh is the bottleneck.
MESH_LIMIT = 100
#: Above this many BGP nodes, ``all()`` selectors in BGPPeers are flagged.
SELECTOR_LIMIT = 100

_BGPCONFIG = "BGPConfiguration/default"


def _mesh_state(view: CheckView) -> str:
    if view.inv.mesh_field is None:
        return "is unset (Calico's default: true)"
    return "is true"


def _vxlan_only(inv: Inventory) -> bool:
    live = [p for p in inv.pools if not p.disabled]
    return bool(live) and all(p.vxlan_mode != "Never" and p.ipip_mode == "Never" for p in live)


def check_mesh_at_scale(view: CheckView) -> list[Finding]:
    members = view.mesh_members()
    m = len(members)
    if not view.mesh_on or m <= MESH_LIMIT:
        return []
    hint = (
        " Every enabled IPPool uses VXLAN: if BGP is off (calico_backend vxlan), the "
        "mesh carries nothing and this can be ignored."
        if _vxlan_only(view.inv)
        else ""
    )
    return [
        Finding(
            "mesh-at-scale",
            Severity.ERROR,
            _BGPCONFIG,
            f"spec.nodeToNodeMeshEnabled {_mesh_state(view)} with {m} nodes in the "
            f"node-to-node mesh: {m - 1} BGP sessions per node, {m * (m - 1) // 2} in total "
            f"(the full mesh is the first bottleneck above ~{MESH_LIMIT} nodes).{hint}",
            "Move to route reflectors: `calico-rr plan --nodes-file nodes.yaml` sizes them, "
            "`calico-rr run` (deploy/) installs them and sets spec.nodeToNodeMeshEnabled: false "
            "once every node peers with an RR.",
        )
    ]


def check_mesh_with_rrs(view: CheckView) -> list[Finding]:
    if not view.mesh_on:
        return []
    rr_names = [view.graph.nodes[i].name for i in view.rrs()]
    if not rr_names:
        return []
    m = len(view.mesh_members())
    return [
        Finding(
            "mesh-with-rrs",
            Severity.WARNING,
            _BGPCONFIG,
            f"spec.nodeToNodeMeshEnabled {_mesh_state(view)} while "
            f"{plural(len(rr_names), 'node')} {'has' if len(rr_names) == 1 else 'have'} a "
            f"route reflector cluster ID ({examples(rr_names)}): RRs leave the mesh, but the "
            f"other {m} nodes still hold {max(m - 1, 0)} mesh sessions each on top of their RR "
            "sessions (fine only during a migration).",
            "Once every node has a session to an RR (check with `calico-rr verify --resources "
            "dump.yaml`), set spec.nodeToNodeMeshEnabled: false on BGPConfiguration default; "
            "`calico-rr run` does this itself after checking.",
        )
    ]


def check_twin_protocols(view: CheckView) -> list[Finding]:
    """Mesh on and BGPPeers peering the same non-RR pairs (core.bgp.twins)."""
    twins = twin_pairs(view.inv.state, examples=EXAMPLES)
    if not twins.count:
        return []
    shown = ", ".join(f"{a}-{b}" for a, b in twins.examples)
    more = (
        f" and {twins.count - len(twins.examples)} more"
        if twins.count > len(twins.examples)
        else ""
    )
    if set(twins.by_family) == {"ipv4", "ipv6"}:  # BIRD and bird6: a pair per family
        more += f"; IPv4 {twins.by_family['ipv4']}, IPv6 {twins.by_family['ipv6']}"
    return [
        Finding(
            "twin-protocols",
            Severity.WARNING,
            _BGPCONFIG,
            f"spec.nodeToNodeMeshEnabled {_mesh_state(view)} and BGPPeers also peer "
            f"{plural(twins.count, 'pair')} of non-RR nodes ({shown}{more}): each end holds "
            "two BGP protocols to one address (Mesh_ and Node_). BIRD runs one of them and "
            "hands incoming connections to the first; after a reconfiguration both ends can "
            "run the second and refuse every connection, and the pair stays down until a "
            "BIRD restart.",
            "Turn the mesh off once every node peers with an RR, or narrow the BGPPeers so "
            "they select only RRs (an RR takes no part in the mesh).",
        )
    ]


def check_client_without_rr(view: CheckView) -> list[Finding]:
    if view.mesh_on:
        return []
    graph = view.graph
    rr_count = len(view.rrs())
    alone: list[str] = []  # no BGP session at all
    no_rr: list[str] = []  # sessions, none to an RR
    clients = 0
    for c, cls in enumerate(graph.classes):
        if cls.cluster_id is not None:
            continue
        clients += len(cls.members)
        peers = [d for d in graph.adj[c] if len(graph.classes[d].members) > (1 if d == c else 0)]
        if any(graph.classes[d].cluster_id is not None for d in peers):
            continue
        target = no_rr if peers else alone
        target.extend(graph.nodes[i].name for i in cls.members)
    externals = len(graph.external)
    fix = (
        "Give these nodes RR sessions: a BGPPeer whose nodeSelector matches them and whose "
        "peerSelector matches the RRs (`calico-rr run` writes and maintains them), or set "
        "spec.nodeToNodeMeshEnabled: true on BGPConfiguration default until they have."
    )
    out: list[Finding] = []
    rr_text = (
        "there is no route reflector at all"
        if rr_count == 0
        else f"{plural(rr_count, 'route reflector')} exist"
    )
    if alone:
        alone.sort()
        severity = Severity.WARNING if externals else Severity.ERROR
        outside = (
            f"; {plural(externals, 'BGPPeer')} to routers outside Calico may carry their "
            "routes instead"
            if externals
            else ": they learn no pod route from any other node"
        )
        out.append(
            Finding(
                "client-without-rr",
                severity,
                group_object("Node", alone),
                f"spec.nodeToNodeMeshEnabled is false and {len(alone)} of {clients} non-RR "
                f"nodes have no BGP session to any Calico node ({examples(alone)}); "
                f"{rr_text}{outside}.",
                fix,
            )
        )
    if no_rr:
        no_rr.sort()
        out.append(
            Finding(
                "client-without-rr",
                Severity.WARNING,
                group_object("Node", no_rr),
                f"spec.nodeToNodeMeshEnabled is false and {len(no_rr)} of {clients} non-RR "
                f"nodes have BGP sessions but none to a route reflector ({examples(no_rr)}); "
                f"{rr_text}: their routes depend on whatever BGPPeers they have.",
                fix,
            )
        )
    return out


def check_rr_overloaded(view: CheckView) -> list[Finding]:
    graph = view.graph
    counts = class_counts(graph)
    over: list[tuple[str, int, int]] = []  # (name, sessions, sessions to RRs)
    for i in view.rrs():
        to_rrs, to_others = counts[graph.node_class[i]]
        if to_rrs + to_others > view.budget:
            over.append((graph.nodes[i].name, to_rrs + to_others, to_rrs))
    if not over:
        return []
    over.sort(key=lambda t: (-t[1], t[0]))
    detail = examples(
        [
            f"{name} ({total} sessions: {total - rrs} clients, {rrs} RRs)"
            for name, total, rrs in over
        ]
    )
    return [
        Finding(
            "rr-overloaded",
            Severity.WARNING,
            group_object("Node", sorted(name for name, _, _ in over)),
            f"{plural(len(over), 'route reflector')} over the session budget of {view.budget}: "
            f"{detail}.",
            f"Spread clients over more RRs: `calico-rr plan --nodes-file nodes.yaml "
            f"--session-budget {view.budget}` picks a topology (multi, quorum, hierarchy) and an "
            "RR count that keep every RR within the budget; `calico-rr run` applies it.",
        )
    ]


def check_rr_single_zone(view: CheckView) -> list[Finding]:
    graph = view.graph
    zones = sorted({z for n in graph.nodes if (z := n.labels.get(ZONE_LABEL)) is not None})
    rrs = [graph.nodes[i] for i in view.rrs()]
    if len(zones) < 2 or not rrs:
        return []
    rr_zones = {n.labels.get(ZONE_LABEL) for n in rrs}
    if len(rr_zones) != 1 or None in rr_zones:
        return []  # spread, or some RR has no zone label (nothing to conclude)
    zone = str(next(iter(rr_zones)))
    names = sorted(n.name for n in rrs)
    return [
        Finding(
            "rr-single-zone",
            Severity.WARNING,
            group_object("Node", names),
            f"all {plural(len(names), 'route reflector')} ({examples(names)}) are in zone "
            f"{zone} ({ZONE_LABEL}) while the BGP nodes span {len(zones)} zones "
            f"({examples(zones)}): losing zone {zone} leaves every client without its RRs.",
            "Spread the RRs over the zones: `calico-rr run` balances RR slots over the zone "
            "label (zoneLabel in the RouteReflectorConfig); by hand, move the RR role (cluster "
            "ID and RR label) to nodes in other zones, one at a time.",
        )
    ]


def _count(text: str, view: CheckView) -> int:
    """How many BGP nodes selector ``text`` (validated by the parser) matches."""
    selector = parse_selector(text)
    if selector.is_all:
        return len(view.graph.nodes)
    return sum(1 for n in view.graph.nodes if selector.matches(n.labels))


def _like_all(text: str) -> str:
    """The words added after a selector that selects every node without being all()."""
    return "" if parse_selector(text).is_all else " (like all())"


def check_all_selectors(view: CheckView) -> list[Finding]:
    n = len(view.graph.nodes)
    if n <= SELECTOR_LIMIT:
        return []
    out: list[Finding] = []
    for peer in view.inv.state.peers:
        out.extend(_all_selector_finding(peer, view, n))
    return out


def _local_count(peer: BGPPeer, view: CheckView, n: int) -> int:
    """How many of the ``n`` BGP nodes the local side of ``peer`` selects."""
    if peer.node:
        return sum(1 for x in view.graph.nodes if x.name == peer.node)
    if peer.node_selector is not None:
        return _count(peer.node_selector, view)
    return n


def _local_words(peer: BGPPeer) -> tuple[str, str]:
    """The local side of ``peer`` in a message, and :func:`_like_all`'s words for it."""
    if peer.node:
        return f"spec.node {safe_repr(peer.node)}", ""
    if peer.node_selector is not None:
        return f"spec.nodeSelector {safe_repr(peer.node_selector)}", _like_all(peer.node_selector)
    return "the local side (no node or nodeSelector: all nodes)", ""


def _all_selector_finding(peer: BGPPeer, view: CheckView, n: int) -> list[Finding]:
    """A BGPPeer with a side that selects every BGP node: ``all()`` by its effect.

    The selectors are evaluated on the BGP nodes' labels, as calico-node does: a
    selector that matches every node (``a == 'x' || all()``, ``!has(nonexistent)``,
    a label every node carries) is ``all()`` for this cluster, whatever its text.
    """
    if peer.peer_selector is None:
        return []  # peerIP peerings reach one router; not a selector matter
    local = _local_count(peer, view, n)
    remote = _count(peer.peer_selector, view)
    local_all = not peer.node and local == n
    peer_all = remote == n
    if not (peer_all or local_all):
        return []
    peer_text = f"spec.peerSelector {safe_repr(peer.peer_selector)}"
    peer_like = _like_all(peer.peer_selector)
    local_text, local_like = _local_words(peer)
    fix = (
        f"Replace BGPPeer {peer.name} with peerings to route reflectors (a peerSelector that "
        "matches only the RRs; `calico-rr run` writes such BGPPeers with narrow selectors), "
        "or delete it."
    )
    if peer_all and local_all:
        severity = Severity.ERROR
        message = (
            f"{peer_text} selects every BGP node{peer_like}, and so does {local_text}"
            f"{local_like}: all {n} BGP "
            f"nodes peer with each other, a full mesh in all but name ({n - 1} sessions "
            "per node)."
        )
    elif peer_all:
        severity = Severity.WARNING
        message = (
            f"{peer_text} selects every BGP node{peer_like}, from {local_text}: each of "
            f"the {local} local nodes peers with all {n} BGP nodes, and every node holds a "
            f"session to each of the {local}."
        )
    else:
        severity = Severity.INFO
        message = (
            f"{local_text} selects every BGP node{local_like}: all {n} BGP nodes peer with the "
            f"{remote} nodes matched by {peer_text}, so each of those holds up to {n - 1} "
            "sessions; "
            "fine for a few RRs of a single cluster, not as the cluster grows."
        )
        fix = (
            "Above ~500 nodes, give clients groups of RRs instead of all of them "
            "(`calico-rr plan --nodes-file nodes.yaml` shows the topology; `calico-rr run` "
            "writes group selectors)."
        )
    return [Finding("all-selectors", severity, f"BGPPeer/{peer.name}", message, fix)]


def check_add_path_fanout(view: CheckView) -> list[Finding]:
    """Too many add-path routes on one BIRD (core.bgp.verify.fanout): only reflectors
    under two or more cluster IDs can chain a route through each other."""
    found = reflected_fanout(view.graph)
    if found is None or not found.warns:
        return []
    more = "at least " if found.at_least else "about "
    return [
        Finding(
            "add-path-fanout",
            Severity.WARNING,
            f"Node/{found.holder}",
            f"BIRD on {found.holder} holds {more}{found.routes_per_node:,} routes, up to "
            f"{more}{found.paths_per_prefix:,} paths for one prefix ({found.origin}'s), over "
            f"the budget of {ROUTES_PER_NODE_BUDGET:,} (counting stops at that or after "
            f"{MAX_STATES:,} states). calico-node's BIRD sends every path it holds "
            "(add paths on), and route reflectors under distinct cluster IDs pass each "
            "route on through every chain of them.",
            "Use fewer cluster IDs that reflect to each other: fewer RRs, RRs of one group "
            "under one cluster ID, or `calico-rr plan --topology hierarchy` "
            "(docs/TOPOLOGIES.md).",
        )
    ]


#: The checks of this module, in the order :func:`~calico_rr.core.doctor.checks.diagnose`
#: runs them.
PEERING_CHECKS = (
    check_mesh_at_scale,
    check_mesh_with_rrs,
    check_twin_protocols,
    check_client_without_rr,
    check_rr_overloaded,
    check_rr_single_zone,
    check_all_selectors,
    check_add_path_fanout,
)
