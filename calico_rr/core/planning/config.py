"""Planner configuration: one frozen value object, validated once.

Every parameter a user can set - on the CLI, later in the operator's custom
resource or the earlier prototype's environment variables - ends up here, and
the rest of the core reads it from here only.  A reader can follow e.g.
``redundancy`` from ``cli.plan`` to :class:`PlanConfig` to the topology that
uses it to the BGPPeer selector it shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from calico_rr.core import values
from calico_rr.core.limits import MAX_NODES
from calico_rr.errors import ConfigError
from calico_rr.model import PREFIX, ZONE_LABEL

Topology = Literal["auto", "single", "multi", "quorum", "hierarchy"]
TOPOLOGIES: tuple[Topology, ...] = ("auto", "single", "multi", "quorum", "hierarchy")

ApiGroup = Literal["crd.projectcalico.org/v1", "projectcalico.org/v3"]
API_GROUPS: tuple[ApiGroup, ...] = ("crd.projectcalico.org/v1", "projectcalico.org/v3")

#: Labels calico-rr writes on nodes.  All under our own prefix, so they can never
#: clash with a user's labels and the operator can tell what it owns.
RR_LABEL = f"{PREFIX}/route-reflector"  # "true" on every RR
SLOT_LABEL = f"{PREFIX}/rr-slot"  # RR slot id, e.g. "r3", "k2-1", "s0"
ROLE_LABEL = f"{PREFIX}/role"  # "rr", "rack-rr", "spine" (RRs only)
GROUP_LABEL = f"{PREFIX}/group"  # client group (multi, single)
QUORUM_LABEL = f"{PREFIX}/quorum"  # client home quorum (quorum topology)
CROSS_LABEL = f"{PREFIX}/cross"  # client cross-group RR (quorum topology)
RACK_LABEL = f"{PREFIX}/rack"  # default rack label read from nodes (hierarchy)
GENERATED_RACK_LABEL = f"{PREFIX}/generated-rack"  # rack the planner gave a node without one

#: Every label key the planner may set on a node (the operator owns exactly these).
OWNED_NODE_LABELS: tuple[str, ...] = (
    RR_LABEL,
    SLOT_LABEL,
    ROLE_LABEL,
    GROUP_LABEL,
    QUORUM_LABEL,
    CROSS_LABEL,
    GENERATED_RACK_LABEL,
)


#: Bounds of the counts a user sets (CLI flags and RouteReflectorConfig fields alike;
#: the CRD declares the same maxima).  Far beyond any sensible value, low enough
#: that no typo (``10^30``) reaches the planner.
#: Per client, more than 16 RRs only multiplies sessions (a client receives every
#: route from every RR it peers with); the proposal uses 2-3.
MAX_REDUNDANCY = 16
#: 1000 RRs serve 500,000 clients at the proposal's ~500 each; a mesh of them is
#: already half a million sessions.
MAX_ROUTE_REFLECTORS = 1000
#: One RR cannot hold more sessions than there are nodes.
MAX_SESSION_BUDGET = MAX_NODES
#: Racks formed from unlabelled nodes: at least a handful of nodes per rack.
MAX_RACKS = MAX_NODES // 10
#: Spines peer with every rack RR; more than 64 spines is a mesh, not a spine layer.
MAX_SPINES = 64


@dataclass(frozen=True, slots=True)
class LinearSizing:
    """``ceil(eligible_nodes * ratio)`` clamped to ``[minimum, maximum]`` (domain.md 5)."""

    ratio: float = 0.005
    minimum: int = 3
    maximum: int = 25


@dataclass(frozen=True, slots=True)
class Step:
    """Clusters of ``up_to`` nodes or fewer get ``rrs`` route reflectors."""

    up_to: int
    rrs: int


@dataclass(frozen=True, slots=True)
class SteppingSizing:
    """User-given ranges, e.g. ``200:3,1000:5,5000:25`` (domain.md 5)."""

    steps: tuple[Step, ...]


Sizing = LinearSizing | SteppingSizing


def parse_steps(text: str) -> SteppingSizing:
    """Parse ``"200:3,1000:5,5000:25"`` (up-to-nodes:rrs, ascending)."""
    steps: list[Step] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            upto_s, rrs_s = part.split(":")
            steps.append(Step(int(upto_s), int(rrs_s)))
        except ValueError:
            raise ConfigError(
                f"sizing step {part!r} is not of the form NODES:RRS (e.g. 200:3)"
            ) from None
    sizing = SteppingSizing(tuple(steps))
    _check_sizing(sizing)
    return sizing


def _check_sizing(sizing: Sizing) -> None:
    if isinstance(sizing, LinearSizing):
        if not 0 < sizing.ratio <= 1:
            raise ConfigError(f"sizing ratio must be in (0, 1], got {sizing.ratio}")
        if sizing.minimum < 1:
            raise ConfigError(f"sizing minimum must be >= 1, got {sizing.minimum}")
        if sizing.maximum > MAX_ROUTE_REFLECTORS:
            raise ConfigError(
                f"sizing maximum must be <= {MAX_ROUTE_REFLECTORS}, got {sizing.maximum}"
            )
        if sizing.maximum < sizing.minimum:
            raise ConfigError(
                f"sizing maximum ({sizing.maximum}) is below the minimum ({sizing.minimum})"
            )
        return
    if not sizing.steps:
        raise ConfigError("stepping sizing needs at least one NODES:RRS step")
    last = 0
    for step in sizing.steps:
        if step.up_to <= last:
            raise ConfigError("stepping sizing steps must have strictly ascending node counts")
        if not 1 <= step.rrs <= MAX_ROUTE_REFLECTORS:
            raise ConfigError(
                f"stepping sizing step {step.up_to}:{step.rrs} needs 1 to "
                f"{MAX_ROUTE_REFLECTORS} RRs"
            )
        last = step.up_to


@dataclass(frozen=True, slots=True)
class PlanConfig:
    """What to build.  Defaults follow the talk and the design proposal."""

    topology: Topology = "auto"
    #: RRs per client (multi, quorum; rack RRs per rack in hierarchy).  Single cluster
    #: peers every client with every RR.  Clamped to the RRs that exist.
    redundancy: int = 3
    sizing: Sizing = field(default_factory=LinearSizing)
    #: Explicit RR count (overrides sizing; in hierarchy: RRs per rack is redundancy).
    rrs: int | None = None
    #: Size each zone on its own node count instead of sizing the whole cluster.
    per_zone_sizing: bool = False
    #: Per-RR BGP session budget used by ``auto`` (proposal: ~500 clients per RR).
    session_budget: int = 500
    zone_label: str | None = ZONE_LABEL
    #: Rack label (hierarchy).  Nodes without it get a generated rack.
    rack_label: str = RACK_LABEL
    #: Number of racks to generate for nodes that have no rack label (hierarchy);
    #: None = derived from the session budget.
    racks: int | None = None
    #: Spine RRs in the hierarchy.
    spines: int = 3
    #: Nodes with this label (any value, or ``key=value``) are preferred as RRs.
    preferred_label: str | None = None
    #: When set, only nodes carrying this label may be RRs (dedicated RR nodes).
    dedicated_label: str | None = None
    #: Nodes matching any of these never become RRs: ``key=value`` (exact),
    #: ``key=`` (present with an empty value), ``key`` (present).
    incompatible_labels: tuple[str, ...] = ()
    #: Cluster IDs are ``cluster_id_base`` + n (dotted quad), n = 1, 2, ...
    cluster_id_base: str = "244.0.0.0"
    api_group: ApiGroup = "crd.projectcalico.org/v1"
    #: BGPPeer ``maxRestartTime`` (graceful restart), e.g. "120s"; None = Calico's default.
    max_restart_time: str | None = None
    #: BGP password for generated peerings: (Secret name, key) in calico-node's
    #: namespace (BGPPeer ``spec.password.secretKeyRef``); None = no password.
    password_secret: tuple[str, str] | None = None
    #: AS number for BGPConfiguration ``default``; None = leave Calico's default.
    as_number: int | None = None

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise ConfigError(
                f"unknown topology {self.topology!r}; choose one of {', '.join(TOPOLOGIES)}"
            )
        _check_count("redundancy", self.redundancy, 1, MAX_REDUNDANCY)
        if self.rrs is not None:
            _check_count("route reflector count", self.rrs, 1, MAX_ROUTE_REFLECTORS)
        _check_count("session budget", self.session_budget, 10, MAX_SESSION_BUDGET)
        if self.racks is not None:
            _check_count("racks", self.racks, 1, MAX_RACKS)
        _check_count("spines", self.spines, 1, MAX_SPINES)
        if self.max_restart_time is not None:
            values.restart_time(self.max_restart_time)
        if self.api_group not in API_GROUPS:
            raise ConfigError(
                f"unknown API group {self.api_group!r}; choose one of {', '.join(API_GROUPS)}"
            )
        if self.password_secret is not None and not all(self.password_secret):
            raise ConfigError("the BGP password Secret reference needs a name and a key")
        _check_sizing(self.sizing)
        values.cluster_id_base(self.cluster_id_base)
        for item in self.incompatible_labels:
            if not item or item.startswith("="):
                raise ConfigError(f"incompatible label {item!r} needs a key")


def _check_count(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{what} must be in {low}..{high}, got {value}")


def cluster_id(base: str, n: int) -> str:
    """The n-th cluster ID after ``base`` as a dotted quad (n >= 1)."""
    value = values.quad_value(base) + n
    if value >= 1 << 32:
        raise ConfigError(f"cluster ID base {base} leaves no room for {n} cluster IDs")
    return ".".join(str((value >> s) & 255) for s in (24, 16, 8, 0))
