"""BIRD 1.6 configuration for one emulated Calico node (pure: data in, text out).

The BGP lab runs one real BIRD 1.6 daemon per Calico node in a network namespace,
configured by Calico's own confd by default.  This module is the project's
imitation of confd (``calico-rr lab --renderer imitation``, and the second opinion
the confd lab compares with): it produces the daemons' configuration files from a
:class:`~calico_rr.core.bgp.sessions.SessionGraph`, the sessions calico-node would
configure.

Facts of domain.md it encodes:

* section 2: a node's BGP address is its router ID and session source; its AS is
  its own ASN, else BGPConfiguration's, else 64512 (``CalicoState.default_asn``);
  on an RR-client session the local side (a node with cluster ID X) carries
  ``rr client; rr cluster id X;``, everything else is plain iBGP (or eBGP across
  AS numbers); every session has ``add paths on``, ``graceful restart``,
  ``multihop`` and ``gateway recursive`` (and, between two Calico nodes, the side
  with the higher address is ``passive``: only the lower one connects, so
  connections never collide); only workload (pod block) routes are exported,
  and ``next hop self`` is not set (iBGP keeps the originator's next hop);
* section 3: reflection is BIRD's RFC 4456 behaviour, so an RR must re-export
  routes it learned over BGP; the export filter therefore accepts the node's own
  pod block (its static route) and BGP-learned routes, nothing else.  BIRD itself
  applies the client / non-client and CLUSTER_LIST rules.

Each node's one pod block is announced as a blackhole static route, like the
block a Calico IPAM affinity gives a node.  A ``protocol direct`` puts the
namespace's connected networks into BIRD's table (never exported over BGP) so
that ``gateway recursive`` can resolve BGP next hops; the kernel protocol then
installs learned blocks in the namespace's routing table (BIRD 1.6 does not
export device routes to the kernel unless ``device routes`` is set).

Nothing here runs BIRD.  The output was checked once by hand with BIRD 1.6.8's
parser (``bird -p -c``: 120 configs, 30-node single/multi/quorum/hierarchy plans,
all accepted); the lab will check it against the running daemon in CI (sessions
and routes).  The unit tests check its structure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from calico_rr.core.bgp.sessions import SessionGraph, SessionKind
from calico_rr.model import CalicoState

#: BIRD 1.6 rejects symbols longer than this (SYM_MAX_LEN).
_BIRD_SYMBOL_MAX = 64
_PROTO_PREFIX = "Peer_"
_EXPORT_FILTER = "calico_rr_export"
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class BirdPeer:
    """One BGP session as seen from the local node."""

    name: str
    ip: str
    asn: int
    #: True: the local node reflects to this peer (``rr client`` on the local side).
    rr_client: bool


@dataclass(frozen=True, slots=True)
class BirdNode:
    """What one node's BIRD needs."""

    name: str
    router_id: str
    asn: int
    cluster_id: str | None
    #: e.g. "10.244.3.0/26"; None for a node without workloads (a dedicated
    #: route reflector): it announces nothing of its own, it only reflects
    pod_block: str | None
    peers: tuple[BirdPeer, ...]


def bird_nodes(
    graph: SessionGraph, state: CalicoState, pod_blocks: Mapping[str, str | None]
) -> list[BirdNode]:
    """One :class:`BirdNode` per graph node, in the graph's (name) order.

    ``pod_blocks`` maps node name to the IPv4 block it announces, or to None for a
    node without workloads; every node of the graph needs an entry (ValueError
    otherwise).  Peers are sorted by name; a peer is an
    RR client when the session kind on the local side is ``RR_CLIENT``.
    """
    default_asn = state.default_asn()
    out: list[BirdNode] = []
    for i, node in enumerate(graph.nodes):
        if node.ip is None:  # the graph keeps only BGP nodes; be safe anyway
            continue
        if node.name not in pod_blocks:
            raise ValueError(f"node {node.name}: no pod block given")
        block = pod_blocks[node.name]
        peers: list[BirdPeer] = []
        for j in graph.peers(i):
            other = graph.nodes[j]
            if other.ip is None:
                continue
            peers.append(
                BirdPeer(
                    name=other.name,
                    ip=other.ip,
                    asn=other.asn if other.asn is not None else default_asn,
                    rr_client=graph.kind(i, j) is SessionKind.RR_CLIENT,
                )
            )
        peers.sort(key=lambda p: p.name)
        out.append(
            BirdNode(
                name=node.name,
                router_id=node.ip,
                asn=node.asn if node.asn is not None else default_asn,
                cluster_id=node.cluster_id,
                pod_block=block,
                peers=tuple(peers),
            )
        )
    return out


def protocol_names(node: BirdNode) -> list[str]:
    """The BGP protocol name of each of ``node.peers``, in the same order.

    ``Peer_`` + the peer's name with every character outside ``[A-Za-z0-9_]``
    replaced by ``_``, cut to fit BIRD's symbol length; a clash (``a-b`` and
    ``a.b``, or two long names with the same start) gets ``_2``, ``_3``, ...
    """
    names: list[str] = []
    used: set[str] = set()
    for peer in node.peers:
        base = _PROTO_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", peer.name)
        base = base[: _BIRD_SYMBOL_MAX - 6]  # room for a uniqueness suffix
        name, n = base, 1
        while name.lower() in used:  # stay clear of case-only differences too
            n += 1
            name = f"{base}_{n}"
        used.add(name.lower())
        names.append(name)
    return names


def _check_ipv4(value: str, what: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError as exc:
        raise ValueError(f"{what}: not an IPv4 address: {value!r}") from exc


def _validate(node: BirdNode, graceful_restart: int | None, socket_hint: str) -> None:
    where = f"node {node.name}"
    _check_ipv4(node.router_id, f"{where} router id")
    if node.pod_block is not None:
        try:
            ipaddress.IPv4Network(node.pod_block)
        except ValueError as exc:
            raise ValueError(f"{where}: bad pod block {node.pod_block!r}") from exc
    if node.cluster_id is not None:
        _check_ipv4(node.cluster_id, f"{where} cluster id")
    elif any(p.rr_client for p in node.peers):
        raise ValueError(f"{where}: has route reflector clients but no cluster id")
    for peer in node.peers:
        _check_ipv4(peer.ip, f"{where} peer {peer.name}")
    if graceful_restart is not None and graceful_restart <= 0:
        raise ValueError(f"graceful restart time must be positive, got {graceful_restart}")
    if "\n" in socket_hint or "\r" in socket_hint:
        raise ValueError("socket_hint must be a single line")


@dataclass(frozen=True, slots=True)
class BgpTimers:
    """Session (re)connection timers, in seconds (BIRD's defaults when not given:
    connect delay 5, connect retry 120, error wait 60..300)."""

    connect_delay: int = 1
    connect_retry: int = 1
    error_wait_min: int = 1
    error_wait_max: int = 5

    def lines(self) -> list[str]:
        values = (self.connect_delay, self.connect_retry, self.error_wait_min, self.error_wait_max)
        if min(values) <= 0 or self.error_wait_min > self.error_wait_max:
            raise ValueError(f"bad BGP timers: {self}")
        return [
            f"  connect delay time {self.connect_delay};",
            f"  connect retry time {self.connect_retry};",
            f"  error wait time {self.error_wait_min},{self.error_wait_max};",
        ]


def render_bird_config(
    node: BirdNode,
    *,
    graceful_restart: int | None = 120,
    socket_hint: str = "",
    timers: BgpTimers | None = None,
) -> str:
    """The BIRD 1.6 configuration file for ``node``.

    ``graceful_restart`` is the restart time announced to peers (None: BIRD's
    default).  ``timers`` shortens session (re)connection delays (the lab uses
    this so sessions come up in about a second instead of BIRD's 5 s / 120 s).
    ``socket_hint`` (e.g. the control socket path the lab starts BIRD
    with) is written as a comment only, to help whoever reads the file.

    Raises ValueError for an address that is not IPv4, a node with RR clients but
    no cluster ID, or a non-positive restart time.
    """
    _validate(node, graceful_restart, socket_hint)
    lines = _node_lines(node, socket_hint)
    for peer, proto in zip(node.peers, protocol_names(node), strict=True):
        lines += _peer_lines(node, peer, proto, graceful_restart, timers)
    return "\n".join(lines) + "\n"


def _node_lines(node: BirdNode, socket_hint: str) -> list[str]:
    """Everything before the BGP sessions: router ID, export filter, the kernel,
    device and direct protocols, and the static route of the node's pod block."""
    block = str(ipaddress.IPv4Network(node.pod_block)) if node.pod_block is not None else None
    own = (
        [f"  if source = RTS_STATIC && net ~ [ {block} ] then accept;"] if block is not None else []
    )
    lines = [f"# BIRD 1.6 configuration for Calico node {node.name} (generated by calico-rr)"]
    if socket_hint:
        lines.append(f"# control socket: {socket_hint}")
    lines += [
        "",
        f"router id {node.router_id};",
        "",
        "# Only pod blocks go to BGP peers: this node's own (static) and, so that",
        "# route reflection works, every block learned over BGP.",
        f"filter {_EXPORT_FILTER} {{",
        *own,
        "  if source = RTS_BGP then accept;",
        "  reject;",
        "}",
        "",
        "# Learned blocks go into the namespace's routing table.",
        "protocol kernel {",
        "  persist off;",
        "  scan time 2;",
        "  import none;",
        "  export all;",
        "  graceful restart;",
        "}",
        "",
        "protocol device {",
        "  scan time 2;",
        "}",
        "",
        "# Connected networks, so that recursive BGP next hops resolve (never exported).",
        "protocol direct {",
        '  interface "*";',
        "}",
    ]
    if block is not None:
        lines += [
            "",
            "# This node's pod block.",
            "protocol static {",
            f"  route {block} blackhole;",
            "}",
        ]
    else:
        lines += ["", "# No workloads here (a dedicated route reflector): no pod block."]
    return lines


def _peer_lines(
    node: BirdNode,
    peer: BirdPeer,
    proto: str,
    graceful_restart: int | None,
    timers: BgpTimers | None,
) -> list[str]:
    """The ``protocol bgp`` block of one session, after a blank line."""
    assert _IDENT_RE.fullmatch(proto)
    kind = "route reflector client" if peer.rr_client else "peer"
    lines = [
        "",
        f"# {kind} {peer.name}",
        f"protocol bgp {proto} {{",
        f"  local {node.router_id} as {node.asn};",
        f"  neighbor {peer.ip} as {peer.asn};",
        f"  source address {node.router_id};",
        "  multihop;",
        "  gateway recursive;",
        "  add paths on;",
        "  graceful restart;",
    ]
    if graceful_restart is not None:
        lines.append(f"  graceful restart time {graceful_restart};")
    if timers is not None:
        lines += timers.lines()
    if ipaddress.IPv4Address(node.router_id) > ipaddress.IPv4Address(peer.ip):
        # one side listens, as Calico's template does between Calico nodes:
        # the lower address connects, so the two never collide
        lines.append("  passive on;")
    if peer.rr_client:
        lines += ["  rr client;", f"  rr cluster id {node.cluster_id};"]
    return [*lines, "  import all;", f"  export filter {_EXPORT_FILTER};", "}"]
