"""Synthetic clusters: deterministic node lists for planning, tests and benchmarks (pure).

The same arguments always give the same cluster, so a plan, a verifier report or a
benchmark on ``--synthetic 5000`` can be reproduced anywhere without a cluster.

Layout follows a real data centre (domain.md section 4, hierarchy): nodes sit in
racks, racks sit in zones, so a rack never spans two zones.  Nodes are generated
in index order; index ``i`` is also the node's age rank (``created = start + 60*i``,
lower index = older = preferred as a route reflector, domain.md section 6).

Speed: 50,000 nodes must take well under a second, so nodes with the same
placement and health share one labels dict, one conditions dict and one taint
tuple.  Treat them as read-only (as every :class:`~calico_rr.model.Node` mapping).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from calico_rr.core.formats.scalars import MAX_TS, MIN_TS
from calico_rr.core.limits import MAX_NODES
from calico_rr.core.planning.config import RACK_LABEL
from calico_rr.errors import ConfigError
from calico_rr.model import ZONE_LABEL, Condition, Node, Taint

#: ``ip_family`` values: IPv4 addresses only, IPv6 only, or both on every node.
IP_FAMILIES = ("ipv4", "ipv6", "dual")

#: Addresses come from 10.0.0.0/8 with 254 hosts per /24 (host parts .1-.254, so no
#: network or broadcast-looking address, and never 10.0.0.0): 256 * 256 * 254.
ADDRESSES = 256 * 256 * 254

_HEALTHY: Mapping[str, str] = {
    Condition.READY.value: "True",
    Condition.MEMORY_PRESSURE.value: "False",
    Condition.DISK_PRESSURE.value: "False",
    Condition.PID_PRESSURE.value: "False",
    # Calico itself sets NetworkUnavailable=False ("CalicoIsUp") once calico-node runs.
    Condition.NETWORK_UNAVAILABLE.value: "False",
}
_NOT_READY: Mapping[str, str] = {**_HEALTHY, Condition.READY.value: "False"}
_DISK_PRESSURE: Mapping[str, str] = {**_HEALTHY, Condition.DISK_PRESSURE.value: "True"}
_UNREACHABLE = (Taint("node.kubernetes.io/unreachable", "NoExecute"),)
_NETWORK_UNAVAILABLE = (Taint("node.kubernetes.io/network-unavailable", "NoSchedule"),)

_State = tuple[Mapping[str, str], tuple[Taint, ...], bool, bool]

#: (conditions, taints, unschedulable, deleting) by problem number; -1 is healthy.
#: Unhealthy nodes get problems 0-5 in turn, one per node, so that each eligibility
#: rule of domain.md section 6 is exercised on its own.
_STATES: dict[int, _State] = {
    -1: (_HEALTHY, (), False, False),
    0: (_NOT_READY, (), False, False),  # Ready=False
    1: (_HEALTHY, (), True, False),  # cordoned
    2: (_HEALTHY, _UNREACHABLE, False, False),  # node.kubernetes.io/unreachable:NoExecute
    3: (_HEALTHY, (), False, True),  # being deleted
    4: (_DISK_PRESSURE, (), False, False),  # DiskPressure=True
    5: (_HEALTHY, _NETWORK_UNAVAILABLE, False, False),  # network-unavailable:NoSchedule
}
_PROBLEMS = len(_STATES) - 1

#: 2**64 / golden ratio.  Ordering indices by ``(i * _PHI64) mod 2**64`` is Fibonacci
#: hashing: any prefix of that order is spread evenly over the index range *and*
#: over every residue class ``i mod racks`` / ``i mod zones`` (the sequence
#: ``frac(i * phi)`` is equidistributed along every arithmetic progression, phi being
#: irrational), so unhealthy nodes land in every rack and zone, not just the first.
_PHI64 = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def zone_name(index: int, zones: int) -> str:
    """Name of zone ``index`` out of ``zones``: ``zone-a`` ... ``zone-z``.

    Beyond 26 zones every name gets the same number of letters (``zone-aa``,
    ``zone-ab``, ...), so names still sort in index order.
    """
    width = 1
    while 26**width < zones:
        width += 1
    letters = []
    for _ in range(width):
        index, rest = divmod(index, 26)
        letters.append(chr(ord("a") + rest))
    return "zone-" + "".join(reversed(letters))


def synthetic_ip(index: int) -> str:
    """The IPv4 address of node ``index``: 10.0.0.1, ..., 10.0.0.254, 10.0.1.1, ..."""
    block, host = divmod(index, 254)
    second, third = divmod(block, 256)
    return f"10.{second}.{third}.{host + 1}"


def synthetic_ip6(index: int) -> str:
    """The IPv6 address of node ``index`` in the ULA prefix fd00::/64: fd00::1,
    fd00::2, ... (compressed form, as :func:`~calico_rr.core.formats.scalars.parse_ipv6`
    writes it)."""
    high, low = divmod(index + 1, 65536)
    return f"fd00::{high:x}:{low:x}" if high else f"fd00::{low:x}"


def _without_ipv6(nodes: int, share: float) -> frozenset[int]:
    """Indices of the ``share`` of a dual-stack cluster's nodes left without IPv6,
    spread over the cluster (the Fibonacci order from its far end, so that they are
    not the same nodes as the unhealthy ones)."""
    count = min(math.floor(share * nodes + 1e-9), nodes)
    if count <= 0:
        return frozenset()
    order = sorted(range(nodes), key=lambda i: (i * _PHI64) & _MASK64)
    return frozenset(order[nodes - count :])


def _check_family(ip_family: str, ipv4_only: float) -> None:
    if ip_family not in IP_FAMILIES:
        raise ConfigError(
            f"synthetic cluster: ip family must be ipv4, ipv6 or dual, got {ip_family!r}"
        )
    if not 0.0 <= ipv4_only <= 1.0:  # also rejects NaN
        raise ConfigError(
            f"synthetic cluster: ipv4_only is a share of nodes in [0, 1], got {ipv4_only}"
        )
    if ipv4_only and ip_family != "dual":
        raise ConfigError("synthetic cluster: ipv4_only applies to a dual-stack cluster only")


def _check(
    nodes: int,
    zones: int,
    racks: int,
    unhealthy: float,
    zone_label: str,
    rack_label: str,
    start: float,
) -> None:
    if nodes < 0:
        raise ConfigError(f"synthetic cluster: nodes must be >= 0, got {nodes}")
    if nodes > MAX_NODES:  # fewer than ADDRESSES, so every node gets an address
        raise ConfigError(
            f"synthetic cluster: at most {MAX_NODES} nodes (calico-rr's limit), got {nodes}"
        )
    if zones < 0:
        raise ConfigError(f"synthetic cluster: zones must be >= 0 (0 = no zones), got {zones}")
    if racks < 0:
        raise ConfigError(f"synthetic cluster: racks must be >= 0 (0 = no racks), got {racks}")
    if not 0.0 <= unhealthy < 1.0:  # also rejects NaN
        raise ConfigError(
            f"synthetic cluster: unhealthy is a share of nodes in [0, 1), got {unhealthy}"
        )
    if zones and not zone_label:
        raise ConfigError("synthetic cluster: zone label must not be empty")
    if racks and not rack_label:
        raise ConfigError("synthetic cluster: rack label must not be empty")
    if zones and racks and zone_label == rack_label:
        raise ConfigError(
            f"synthetic cluster: zone and rack label are both {zone_label!r}; they must differ"
        )
    last = start + 60.0 * max(nodes - 1, 0)
    # Years 1-9999: the range RFC 3339 timestamps (format_timestamp) can write.
    if not (MIN_TS <= start < MAX_TS and last < MAX_TS):  # also rejects NaN/inf
        raise ConfigError(f"synthetic cluster: start {start} gives creation times outside 1-9999")


def _placements(
    nodes: int, zones: int, racks: int, zone_label: str, rack_label: str
) -> tuple[list[dict[str, str]], int]:
    """One labels dict per distinct placement, and the cycle length to index them."""
    if racks:
        # Rack k lives in zone k % zones: racks are inside zones, so a node's zone is
        # its rack's (node i -> rack i % racks -> zone (i % racks) % zones).
        out = []
        for k in range(min(racks, nodes)):  # racks beyond the node count stay empty
            labels = {rack_label: f"rack-{k:03d}"}
            if zones:
                labels[zone_label] = zone_name(k % zones, zones)
            out.append(labels)
        return out, racks
    if zones:
        return [{zone_label: zone_name(k, zones)} for k in range(min(zones, nodes))], zones
    return [{}], 1


def _unhealthy_problems(nodes: int, unhealthy: float) -> dict[int, int]:
    """Node index -> problem number for the ``unhealthy`` share of ``nodes``."""
    # Floor of the share (a tiny epsilon absorbs 0.29 * 100 = 28.999...), and never
    # every node: unhealthy < 1 promises some healthy ones.
    count = min(math.floor(unhealthy * nodes + 1e-9), max(nodes - 1, 0))
    if count <= 0:
        return {}
    order = sorted(range(nodes), key=lambda i: (i * _PHI64) & _MASK64)
    return {i: j % _PROBLEMS for j, i in enumerate(order[:count])}


def synthetic_cluster(
    nodes: int,
    *,
    zones: int = 0,
    racks: int = 0,
    unhealthy: float = 0.0,
    zone_label: str = ZONE_LABEL,
    rack_label: str = RACK_LABEL,
    start: float = 1704067200.0,
    ip_family: str = "ipv4",
    ipv4_only: float = 0.0,
) -> list[Node]:
    """A deterministic cluster of ``nodes`` nodes, sorted by name.

    * names ``node-00000``, ``node-00001``, ... (zero-padded to 5 digits, so
      name order is index order);
    * unique addresses from 10.0.0.0/8 (:func:`synthetic_ip`), up to :data:`ADDRESSES`;
    * ``created = start + 60 * i`` (default start: 2024-01-01T00:00:00Z);
    * ``racks > 0``: node ``i`` in ``rack-{i % racks:03d}`` (label ``rack_label``);
    * ``zones > 0``: with racks, rack ``k`` in zone ``k % zones`` and each node in its
      rack's zone; without racks node ``i`` in zone ``i % zones`` (:func:`zone_name`);
    * every node Ready and schedulable, except ``floor(unhealthy * nodes)`` nodes
      spread over the cluster, which get one problem each in turn: Ready=False,
      cordoned, ``node.kubernetes.io/unreachable:NoExecute``, being deleted,
      DiskPressure=True, ``node.kubernetes.io/network-unavailable:NoSchedule``;
    * ``ip_family``: ``ipv4`` (the addresses above), ``ipv6`` (fd00::/64 addresses,
      :func:`synthetic_ip6`, and no IPv4) or ``dual`` (both); in a dual-stack
      cluster ``floor(ipv4_only * nodes)`` nodes spread over it have no IPv6 address.

    Raises ConfigError on a negative count, ``unhealthy`` outside [0, 1), or more
    nodes than fit in 10.0.0.0/8.
    """
    _check(nodes, zones, racks, unhealthy, zone_label, rack_label, start)
    _check_family(ip_family, ipv4_only)
    with4 = ip_family != "ipv6"
    with6 = ip_family != "ipv4"
    no6 = _without_ipv6(nodes, ipv4_only) if with6 else frozenset()
    placements, cycle = _placements(nodes, zones, racks, zone_label, rack_label)
    problems = _unhealthy_problems(nodes, unhealthy)
    width = len(str(MAX_NODES - 1))  # every index fits: names sort in index order
    no_annotations: Mapping[str, str] = {}

    out: list[Node] = []
    append = out.append
    for i in range(nodes):
        block, host = divmod(i, 254)
        second, third = divmod(block, 256)
        conditions, taints, cordoned, deleting = _STATES[problems.get(i, -1)]
        append(
            Node(
                name=f"node-{i:0{width}d}",
                # synthetic_ip(i), inlined for speed
                ip=f"10.{second}.{third}.{host + 1}" if with4 else None,
                labels=placements[i % cycle],
                annotations=no_annotations,
                conditions=conditions,
                taints=taints,
                unschedulable=cordoned,
                deleting=deleting,
                created=start + 60.0 * i,
                ip6=synthetic_ip6(i) if with6 and i not in no6 else None,
            )
        )
    return out
