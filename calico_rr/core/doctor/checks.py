"""``calico-rr doctor``'s checks: a Calico cluster's configuration against the talk's
scale advice (pure).

:func:`diagnose` turns an :class:`~calico_rr.core.doctor.inventory.Inventory` into a
sorted list of :class:`Finding`.  BGP findings are measured on the session graph
calico-node would build (:func:`calico_rr.core.bgp.sessions.build_session_graph`), not
guessed from the objects.

The checks and their thresholds (domain.md sections 2, 4, 5, 8 and 9; docs/DOCTOR.md
lists them with the reasoning):

=================== ========= ==========================================================
id                  severity  when
=================== ========= ==========================================================
mesh-at-scale       error     mesh on and more than 100 nodes in it
mesh-with-rrs       warning   mesh on while some nodes have an RR cluster ID
twin-protocols      warning   mesh on and BGPPeers peering the same non-RR pairs: two
                              BIRD protocols to one address on both ends (core.bgp.twins)
client-without-rr   error     mesh off, a non-RR node with no BGP session at all
                    warning   mesh off, a non-RR node with sessions, none to an RR (or
                              no session at all while the cluster peers with outside
                              routers, which may carry its routes)
rr-overloaded       warning   an RR holds more sessions than the session budget (500)
rr-single-zone      warning   every RR in one zone while the BGP nodes span several
encap-always        warning   an enabled IPPool with ipipMode/vxlanMode Always and nodes
                              sharing a subnet (or subnets unknown); info when every
                              node is alone in its subnet
nat-outgoing        info      an enabled IPPool with natOutgoing: true
typha-missing       warning   Kubernetes datastore, 51-100 nodes, no calico-typha
                    error     ... more than 100 nodes
typha-replicas      error     fewer than one replica per 200 nodes
                    warning   fewer than 3 (production), more than 20, or not fewer
                              replicas than nodes
all-selectors       error     more than 100 BGP nodes and a BGPPeer whose both sides
                              select every BGP node (a second full mesh)
                    warning   ... peerSelector selecting every node, from a subset
                    info      ... nodeSelector (or none) selecting every node, towards
                              a subset
=================== ========= ==========================================================

"Selects every node" is evaluated, not read off the text: ``all()``, but also
``a == 'x' || all()``, ``!has(nonexistent)`` or ``has(kubernetes.io/hostname)`` when
every BGP node matches (the nodes' labels decide, as they do for calico-node).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from calico_rr.core.bgp.selector import parse_selector
from calico_rr.core.bgp.sessions import SessionGraph, build_session_graph
from calico_rr.core.bgp.twins import twin_pairs
from calico_rr.core.doctor.inventory import TYPHA_NAME, Deployment, Inventory
from calico_rr.core.operator.typha import (
    MAX_REPLICAS,
    MIN_REPLICAS,
    NODES_PER_REPLICA,
    replicas_wanted,
)
from calico_rr.errors import InputError, safe_repr
from calico_rr.model import ZONE_LABEL, BGPPeer

__all__ = [
    "DEFAULT_SESSION_BUDGET",
    "MESH_LIMIT",
    "SELECTOR_LIMIT",
    "TYPHA_ESSENTIAL",
    "TYPHA_RECOMMENDED",
    "Finding",
    "Severity",
    "diagnose",
    "summary_counts",
]

#: Above this many nodes in the node-to-node mesh, the mesh is the bottleneck.
MESH_LIMIT = 100
#: Above this many BGP nodes, ``all()`` selectors in BGPPeers are flagged.
SELECTOR_LIMIT = 100
#: Sessions one route reflector handles comfortably (domain.md 4; PlanConfig's default).
DEFAULT_SESSION_BUDGET = 500
#: Typha (Kubernetes datastore only): recommended above 50 nodes, essential above 100;
#: how many replicas is the Typha rule's (``core.operator.typha``).
TYPHA_RECOMMENDED = 50
TYPHA_ESSENTIAL = 100
#: How many names a message lists before "and N more".
EXAMPLES = 5


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the doctor found: what, where, the evidence, and what to do."""

    id: str
    severity: Severity
    object: str  # "Kind/name" or "Kind/namespace/name"; "Node/a (+3 more)" for a group
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "severity": self.severity.value,
            "object": self.object,
            "message": self.message,
            "fix": self.fix,
        }

    def sort_key(self) -> tuple[int, str, str, str]:
        return (_RANK[self.severity], self.id, self.object, self.message)


# ---------------------------------------------------------------------------
# Helpers for messages
# ---------------------------------------------------------------------------


def _group_object(kind: str, names: Sequence[str]) -> str:
    """``Node/a``, or ``Node/a (+3 more)`` for a group of objects."""
    head = f"{kind}/{names[0]}"
    return head if len(names) == 1 else f"{head} (+{len(names) - 1} more)"


def _examples(names: Sequence[str], limit: int = EXAMPLES) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _View:
    """The inventory plus the session graph and a few counts every check uses."""

    inv: Inventory
    graph: SessionGraph
    budget: int

    @property
    def mesh_on(self) -> bool:
        return self.inv.state.config.mesh_enabled

    def mesh_members(self) -> list[str]:
        return [n.name for n in self.graph.nodes if n.cluster_id is None]

    def rrs(self) -> list[int]:
        return [i for i in range(len(self.graph.nodes)) if self.graph.is_rr(i)]


_BGPCONFIG = "BGPConfiguration/default"


def _mesh_state(view: _View) -> str:
    if view.inv.mesh_field is None:
        return "is unset (Calico's default: true)"
    return "is true"


def _vxlan_only(inv: Inventory) -> bool:
    live = [p for p in inv.pools if not p.disabled]
    return bool(live) and all(p.vxlan_mode != "Never" and p.ipip_mode == "Never" for p in live)


def check_mesh_at_scale(view: _View) -> list[Finding]:
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


def check_mesh_with_rrs(view: _View) -> list[Finding]:
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
            f"{_plural(len(rr_names), 'node')} {'has' if len(rr_names) == 1 else 'have'} a "
            f"route reflector cluster ID ({_examples(rr_names)}): RRs leave the mesh, but the "
            f"other {m} nodes still hold {max(m - 1, 0)} mesh sessions each on top of their RR "
            "sessions (fine only during a migration).",
            "Once every node has a session to an RR (check with `calico-rr verify --resources "
            "dump.yaml`), set spec.nodeToNodeMeshEnabled: false on BGPConfiguration default; "
            "`calico-rr run` does this itself after checking.",
        )
    ]


def check_twin_protocols(view: _View) -> list[Finding]:
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
    return [
        Finding(
            "twin-protocols",
            Severity.WARNING,
            _BGPCONFIG,
            f"spec.nodeToNodeMeshEnabled {_mesh_state(view)} and BGPPeers also peer "
            f"{_plural(twins.count, 'pair')} of non-RR nodes ({shown}{more}): each end holds "
            "two BGP protocols to one address (Mesh_ and Node_). BIRD runs one of them and "
            "hands incoming connections to the first; after a reconfiguration both ends can "
            "run the second and refuse every connection, and the pair stays down until a "
            "BIRD restart.",
            "Turn the mesh off once every node peers with an RR, or narrow the BGPPeers so "
            "they select only RRs (an RR takes no part in the mesh).",
        )
    ]


def check_client_without_rr(view: _View) -> list[Finding]:
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
        else f"{_plural(rr_count, 'route reflector')} exist"
    )
    if alone:
        alone.sort()
        severity = Severity.WARNING if externals else Severity.ERROR
        outside = (
            f"; {_plural(externals, 'BGPPeer')} to routers outside Calico may carry their "
            "routes instead"
            if externals
            else ": they learn no pod route from any other node"
        )
        out.append(
            Finding(
                "client-without-rr",
                severity,
                _group_object("Node", alone),
                f"spec.nodeToNodeMeshEnabled is false and {len(alone)} of {clients} non-RR "
                f"nodes have no BGP session to any Calico node ({_examples(alone)}); "
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
                _group_object("Node", no_rr),
                f"spec.nodeToNodeMeshEnabled is false and {len(no_rr)} of {clients} non-RR "
                f"nodes have BGP sessions but none to a route reflector ({_examples(no_rr)}); "
                f"{rr_text}: their routes depend on whatever BGPPeers they have.",
                fix,
            )
        )
    return out


def check_rr_overloaded(view: _View) -> list[Finding]:
    graph = view.graph
    over: list[tuple[str, int, int]] = []  # (name, sessions, sessions to RRs)
    for i in view.rrs():
        total = graph.degree(i)
        if total <= view.budget:
            continue
        c = graph.node_class[i]
        to_rrs = 0
        for d in graph.adj[c]:
            cls = graph.classes[d]
            if cls.cluster_id is not None:
                to_rrs += len(cls.members) - (1 if d == c else 0)
        over.append((graph.nodes[i].name, total, to_rrs))
    if not over:
        return []
    over.sort(key=lambda t: (-t[1], t[0]))
    detail = ", ".join(
        f"{name} ({total} sessions: {total - rrs} clients, {rrs} RRs)"
        for name, total, rrs in over[:EXAMPLES]
    )
    if len(over) > EXAMPLES:
        detail += f" and {len(over) - EXAMPLES} more"
    return [
        Finding(
            "rr-overloaded",
            Severity.WARNING,
            _group_object("Node", sorted(name for name, _, _ in over)),
            f"{_plural(len(over), 'route reflector')} over the session budget of {view.budget}: "
            f"{detail}.",
            f"Spread clients over more RRs: `calico-rr plan --nodes-file nodes.yaml "
            f"--session-budget {view.budget}` picks a topology (multi, quorum, hierarchy) and an "
            "RR count that keep every RR within the budget; `calico-rr run` applies it.",
        )
    ]


def check_rr_single_zone(view: _View) -> list[Finding]:
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
            _group_object("Node", names),
            f"all {_plural(len(names), 'route reflector')} ({_examples(names)}) are in zone "
            f"{zone} ({ZONE_LABEL}) while the BGP nodes span {len(zones)} zones "
            f"({_examples(zones)}): losing zone {zone} leaves every client without its RRs.",
            "Spread the RRs over the zones: `calico-rr run` balances RR slots over the zone "
            "label (zoneLabel in the RouteReflectorConfig); by hand, move the RR role (cluster "
            "ID and RR label) to nodes in other zones, one at a time.",
        )
    ]


def _subnet_evidence(view: _View) -> tuple[bool | None, str]:
    """(do nodes share subnets?, evidence) over the BGP nodes; None when unknown."""
    nodes = [n.name for n in view.graph.nodes]
    known = [view.inv.subnets[n] for n in nodes if n in view.inv.subnets]
    if not known:
        return None, "the nodes' subnets are unknown (their addresses carry no prefix length)"
    sizes: dict[str, int] = {}
    for net in known:
        sizes[net] = sizes.get(net, 0) + 1
    shared = sum(k for k in sizes.values() if k > 1)
    biggest = max(sizes, key=lambda s: (sizes[s], s))
    text = f"{len(known)} nodes sit in {_plural(len(sizes), 'subnet')}"
    if shared:
        text += (
            f", {shared} of them share a subnet with another node (largest: {biggest} with "
            f"{sizes[biggest]} nodes)"
        )
        return True, text
    return False, text + ", each node alone in its subnet"


def check_encap_always(view: _View) -> list[Finding]:
    out: list[Finding] = []
    shares: bool | None = None
    evidence = ""
    for pool in view.inv.pools:
        if pool.disabled:
            continue
        for key, mode, tunnel in (
            ("ipipMode", pool.ipip_mode, "IPIP"),
            ("vxlanMode", pool.vxlan_mode, "VXLAN"),
        ):
            if mode != "Always":
                continue
            if not evidence:
                shares, evidence = _subnet_evidence(view)
            if shares is False:
                severity = Severity.INFO
                gain = "CrossSubnet would encapsulate the same traffic: nothing to gain today"
            else:
                severity = Severity.WARNING
                gain = (
                    "CrossSubnet would send traffic between nodes of one subnet unencapsulated "
                    "(no per-packet overhead, larger MTU)"
                )
            other = (
                "VXLAN (lower throughput, but no BGP needed)"
                if tunnel == "IPIP"
                else "CrossSubnet, or IPIP CrossSubnet with BGP"
            )
            out.append(
                Finding(
                    "encap-always",
                    severity,
                    f"IPPool/{pool.name}",
                    f"spec.{key} is Always on {pool.cidr}: every pod packet between nodes is "
                    f"{tunnel}-encapsulated, also between nodes on the same subnet; {evidence}; "
                    f"{gain}.",
                    f"Set spec.{key}: CrossSubnet on IPPool {pool.name} (encapsulate only "
                    f"across subnets); keep Always only if the network drops pod addresses even "
                    f"inside a subnet. Alternative: {other}.",
                )
            )
    return out


def check_nat_outgoing(view: _View) -> list[Finding]:
    return [
        Finding(
            "nat-outgoing",
            Severity.INFO,
            f"IPPool/{pool.name}",
            f"spec.natOutgoing is true on {pool.cidr}: pod traffic to destinations outside the "
            "pool is masqueraded to the node's address, so outside networks see node IPs, not "
            "pod IPs (the talk: a special, advanced case).",
            f"Keep it only where pods must reach networks that cannot route {pool.cidr}; where "
            "pod addresses are routable (BGP to the top-of-rack routers), set "
            f"spec.natOutgoing: false on IPPool {pool.name}.",
        )
        for pool in view.inv.pools
        if pool.nat_outgoing and not pool.disabled
    ]


def _typha(inv: Inventory) -> list[Deployment]:
    return [d for d in inv.deployments if d.name == TYPHA_NAME]


def check_typha_missing(view: _View) -> list[Finding]:
    n = len(view.inv.state.nodes)
    if not view.inv.kdd or n <= TYPHA_RECOMMENDED or _typha(view.inv):
        return []
    essential = n > TYPHA_ESSENTIAL
    _, want = replicas_wanted(n)
    return [
        Finding(
            "typha-missing",
            Severity.ERROR if essential else Severity.WARNING,
            f"Deployment/{TYPHA_NAME}",
            f"{n} nodes on the Kubernetes datastore and no {TYPHA_NAME} Deployment in any "
            f"namespace: every node's Felix watches the API server itself ({n} watches per "
            f"resource type). Typha is recommended above {TYPHA_RECOMMENDED} nodes and "
            f"essential above {TYPHA_ESSENTIAL}.",
            f"Deploy Typha with {want} replicas (the tigera-operator does it by itself; for a "
            "manifest install use Calico's Typha manifest and set typha_service_name in the "
            "calico-config ConfigMap).",
        )
    ]


def check_typha_replicas(view: _View) -> list[Finding]:
    if not view.inv.kdd:
        return []
    n = len(view.inv.state.nodes)
    hard, recommended = replicas_wanted(n)
    out: list[Finding] = []
    for dep in _typha(view.inv):
        r = dep.replicas
        problems: list[str] = []
        severity = Severity.WARNING
        if r < hard:
            severity = Severity.ERROR
            problems.append(
                f"fewer than one per {NODES_PER_REPLICA} nodes ({hard} needed for {n} "
                "nodes): each Typha serves too many Felix agents"
            )
        elif r < recommended:
            problems.append(
                f"below the production minimum of {recommended} (at least {MIN_REPLICAS}, one per "
                f"{NODES_PER_REPLICA} nodes): losing one replica moves its Felix agents "
                "onto too few others"
            )
        if r > MAX_REPLICAS:
            problems.append(
                f"more than {MAX_REPLICAS}: every replica adds a watch on the API server and "
                "Felix gains nothing"
            )
        if n >= 2 and r >= n:  # the rule holds from 2 nodes on (core.operator.typha)
            problems.append(
                f"not fewer than the {n} nodes: Typha runs on the host network, one per node, "
                "so a rolling update has nowhere to go"
            )
        if not problems:
            continue
        target = f"Set spec.replicas: {recommended} on Deployment {dep.namespace}/{dep.name}"
        out.append(
            Finding(
                "typha-replicas",
                severity,
                f"Deployment/{dep.namespace}/{dep.name}",
                f"spec.replicas is {r} with {n} nodes: " + "; ".join(problems) + ".",
                f"{target} "
                f"(max({MIN_REPLICAS}, ceil(nodes/{NODES_PER_REPLICA})), at most "
                f"{MAX_REPLICAS}, fewer than the nodes); with the tigera-operator, it sizes Typha "
                "itself.",
            )
        )
    return out


def _count(text: str, view: _View) -> int:
    """How many BGP nodes selector ``text`` (validated by the parser) matches."""
    selector = parse_selector(text)
    if selector.is_all:
        return len(view.graph.nodes)
    return sum(1 for n in view.graph.nodes if selector.matches(n.labels))


def _like_all(text: str) -> str:
    """The words added after a selector that selects every node without being all()."""
    return "" if parse_selector(text).is_all else " (like all())"


def check_all_selectors(view: _View) -> list[Finding]:
    n = len(view.graph.nodes)
    if n <= SELECTOR_LIMIT:
        return []
    out: list[Finding] = []
    for peer in view.inv.state.peers:
        out.extend(_all_selector_finding(peer, view, n))
    return out


def _all_selector_finding(peer: BGPPeer, view: _View, n: int) -> list[Finding]:
    """A BGPPeer with a side that selects every BGP node: ``all()`` by its effect.

    The selectors are evaluated on the BGP nodes' labels, as calico-node does: a
    selector that matches every node (``a == 'x' || all()``, ``!has(nonexistent)``,
    a label every node carries) is ``all()`` for this cluster, whatever its text.
    """
    if peer.peer_selector is None:
        return []  # peerIP peerings reach one router; not a selector matter
    if peer.node:
        local = sum(1 for x in view.graph.nodes if x.name == peer.node)
    elif peer.node_selector is not None:
        local = _count(peer.node_selector, view)
    else:
        local = n
    remote = _count(peer.peer_selector, view)
    local_all = not peer.node and local == n
    peer_all = remote == n
    if not (peer_all or local_all):
        return []
    peer_text = f"spec.peerSelector {safe_repr(peer.peer_selector)}"
    peer_like = _like_all(peer.peer_selector)
    local_like = ""
    if peer.node:
        local_text = f"spec.node {safe_repr(peer.node)}"
    elif peer.node_selector is not None:
        local_text = f"spec.nodeSelector {safe_repr(peer.node_selector)}"
        local_like = _like_all(peer.node_selector)
    else:
        local_text = "the local side (no node or nodeSelector: all nodes)"
    obj = f"BGPPeer/{peer.name}"
    fix_mesh = (
        f"Replace BGPPeer {peer.name} with peerings to route reflectors (a peerSelector that "
        "matches only the RRs; `calico-rr run` writes such BGPPeers with narrow selectors), "
        "or delete it."
    )
    if peer_all and local_all:
        return [
            Finding(
                "all-selectors",
                Severity.ERROR,
                obj,
                f"{peer_text} selects every BGP node{peer_like}, and so does {local_text}"
                f"{local_like}: all {n} BGP "
                f"nodes peer with each other, a full mesh in all but name ({n - 1} sessions "
                "per node).",
                fix_mesh,
            )
        ]
    if peer_all:
        return [
            Finding(
                "all-selectors",
                Severity.WARNING,
                obj,
                f"{peer_text} selects every BGP node{peer_like}, from {local_text}: each of "
                f"the {local} local nodes peers with all {n} BGP nodes, and every node holds a "
                f"session to each of the {local}.",
                fix_mesh,
            )
        ]
    return [
        Finding(
            "all-selectors",
            Severity.INFO,
            obj,
            f"{local_text} selects every BGP node{local_like}: all {n} BGP nodes peer with the "
            f"{remote} nodes matched by {peer_text}, so each of those holds up to {n - 1} "
            "sessions; "
            "fine for a few RRs of a single cluster, not as the cluster grows.",
            "Above ~500 nodes, give clients groups of RRs instead of all of them "
            "(`calico-rr plan --nodes-file nodes.yaml` shows the topology; `calico-rr run` "
            "writes group selectors).",
        )
    ]


CHECKS = (
    check_mesh_at_scale,
    check_mesh_with_rrs,
    check_twin_protocols,
    check_client_without_rr,
    check_rr_overloaded,
    check_rr_single_zone,
    check_encap_always,
    check_nat_outgoing,
    check_typha_missing,
    check_typha_replicas,
    check_all_selectors,
)


def diagnose(inv: Inventory, *, session_budget: int = DEFAULT_SESSION_BUDGET) -> list[Finding]:
    """Every finding for ``inv``, errors first, then by id, object and message."""
    if session_budget < 1:
        raise InputError(f"must be >= 1, got {session_budget}", field="--session-budget")
    view = _View(inv, build_session_graph(inv.state), session_budget)
    findings = [f for check in CHECKS for f in check(view)]
    return sorted(findings, key=Finding.sort_key)


def summary_counts(findings: Iterable[Finding]) -> dict[str, int]:
    counts = {s.value: 0 for s in Severity}
    for f in findings:
        counts[f.severity.value] += 1
    return counts
