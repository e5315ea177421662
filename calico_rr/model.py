"""Plain data shared by every layer.

Two families of types live here:

* :class:`Node` - a Kubernetes node as the *planner* sees it: health, labels,
  annotations, age.  Built by ``adapters.nodes_io`` (from a NodeList file) or by
  ``core.planning.synthetic`` (generated clusters), later by the operator's cache.
* :class:`CalicoNode`, :class:`BGPPeer`, :class:`BGPConfig` - Calico's BGP objects
  as calico-node reads them (domain.md section 2), independent of the datastore
  and of the API group.  Built by ``core.bgp.resources`` from resource dicts; the
  session graph and the verifier only ever look at these.

Everything is immutable and hashable where it is cheap to be; mappings are plain
dicts that callers must treat as read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

# ---------------------------------------------------------------------------
# Well-known names (Calico's, Kubernetes' and ours)
# ---------------------------------------------------------------------------

#: KDD annotations calico-node reads on a Kubernetes Node (domain.md section 2).
ANN_IPV4 = "projectcalico.org/IPv4Address"
ANN_IPV6 = "projectcalico.org/IPv6Address"
ANN_ASN = "projectcalico.org/ASNumber"
ANN_CLUSTER_ID = "projectcalico.org/RouteReflectorClusterID"

#: Calico's default AS number when neither the node nor BGPConfiguration sets one.
DEFAULT_ASN = 64512

ZONE_LABEL = "topology.kubernetes.io/zone"

#: Our label namespace.  Every object calico-rr creates carries MANAGED_BY_LABEL.
PREFIX = "calico-rr.io"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "calico-rr"


class Condition(StrEnum):
    """Kubernetes node condition types the planner looks at."""

    READY = "Ready"
    MEMORY_PRESSURE = "MemoryPressure"
    DISK_PRESSURE = "DiskPressure"
    PID_PRESSURE = "PIDPressure"
    NETWORK_UNAVAILABLE = "NetworkUnavailable"


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class Node:
    """A Kubernetes node, reduced to what route-reflector planning needs.

    ``conditions`` maps a condition type (``"Ready"``, ``"DiskPressure"``, ...) to its
    status string (``"True"``, ``"False"``, ``"Unknown"``).  ``created`` is the
    creationTimestamp as POSIX seconds (older = smaller = preferred as an RR).
    ``ip`` is the node's IPv4 address without prefix length, or None when the node
    has none; ``ip6`` its IPv6 address (compressed form, so equal addresses compare
    equal), or None.  A node with neither cannot run BGP and is never chosen.
    ``ip6`` comes last with a default so that IPv4-only callers need not know it.
    """

    name: str
    ip: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    conditions: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    deleting: bool = False
    created: float = 0.0
    #: The whole object as read (for ``render --include-nodes``); None for synthetic nodes.
    raw: Mapping[str, object] | None = field(default=None, compare=False, hash=False)
    ip6: str | None = None

    @property
    def ready(self) -> bool:
        return self.conditions.get(Condition.READY.value) == "True"

    @property
    def addressed(self) -> bool:
        """Has a BGP address of some family (calico-node runs BGP on it)."""
        return self.ip is not None or self.ip6 is not None


# ---------------------------------------------------------------------------
# Calico's BGP objects, as calico-node interprets them (domain.md section 2)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalicoNode:
    """A node as calico-node's BGP code sees it.

    ``ip`` is the IPv4 address without prefix length (None: no IPv4 sessions),
    ``ip6`` the IPv6 one in compressed form (None: no IPv6 sessions; calico-node's
    bird6 uses the same BGPPeers, domain.md section 2).  The session graph reads
    ``ip`` only: ``core.bgp.families.project`` puts the address of the family
    being checked there.
    ``asn`` is the node's own AS number or None (then BGPConfiguration's, then 64512).
    ``cluster_id`` set means the node is a route reflector (domain.md section 2).
    """

    name: str
    ip: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    asn: int | None = None
    cluster_id: str | None = None
    ip6: str | None = None


class ReversePeering(StrEnum):
    AUTO = "Auto"
    MANUAL = "Manual"


@dataclass(frozen=True, slots=True)
class BGPPeer:
    """A BGPPeer resource, API-group neutral.

    Local side: ``node`` (one node by name), or ``node_selector``, or neither (= all
    nodes).  Remote side: ``peer_ip`` (+ ``as_number``) or ``peer_selector``.
    Selectors are kept as source text; ``core.bgp.selector`` parses them.
    """

    name: str
    node: str | None = None
    node_selector: str | None = None
    peer_ip: str | None = None
    as_number: int | None = None
    peer_selector: str | None = None
    reverse_peering: ReversePeering = ReversePeering.AUTO
    max_restart_time: str | None = None
    password_secret: tuple[str, str] | None = None  # (secret name, key)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BGPConfig:
    """BGPConfiguration ``default`` as calico-node reads it."""

    mesh_enabled: bool = True
    as_number: int | None = None


@dataclass(frozen=True, slots=True)
class CalicoState:
    """Everything calico-node needs to compute BGP sessions, from any datastore."""

    nodes: tuple[CalicoNode, ...]
    peers: tuple[BGPPeer, ...] = ()
    config: BGPConfig = BGPConfig()

    def default_asn(self) -> int:
        return self.config.as_number if self.config.as_number is not None else DEFAULT_ASN
