"""The topologies side by side across cluster sizes: the series behind ``plan --plot``.

For every size and every topology a synthetic cluster of that size (with the zones,
racks and share of unhealthy nodes of the cluster being planned) is planned with the
plan's own configuration, only the topology changed; ``auto`` is one more series,
showing what it picks.  The figures are the ones ``calico-rr plan`` prints, measured
the same way: the plan is rendered and read back (``summary.plan_graph``), the session
figures come from ``metrics.session_metrics`` and the UPDATE count from the
verifier's propagation (``VerifyReport.updates_per_rr``: prefixes received per RR).
Nothing is estimated from the planner's intent.

A topology that cannot be planned at a size (a configuration error, e.g. a cluster ID
base with no room for the IDs it needs) is a gap, with the error kept for display.

Pure: data in, data out; the drawing lives in ``adapters/plots.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from calico_rr.core.bgp.metrics import Stats, session_metrics
from calico_rr.core.bgp.verify import fast
from calico_rr.core.planning.candidates import healthy
from calico_rr.core.planning.config import PlanConfig, Topology
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import plan_graph
from calico_rr.errors import CalicoRRError, InputError
from calico_rr.model import ZONE_LABEL, Node

#: Cluster sizes compared by default: the talk's range (50 to 5000) and one step beyond.
#: All five series at all sizes take about 8 s on one core (measured, docs/REPORT.md).
DEFAULT_SIZES: tuple[int, ...] = (50, 100, 200, 500, 1000, 2000, 5000, 10000)

#: Series in drawing order; ``auto`` last, drawn over the others.
COMPARED: tuple[Topology, ...] = ("single", "multi", "quorum", "hierarchy", "auto")

#: The planned cluster's own size joins the compared sizes up to this many nodes.
MAX_EXTRA_SIZE = 20000

#: (Point attribute, panel title) of each figure compared.
METRICS: tuple[tuple[str, str], ...] = (
    ("sessions_per_rr", "BGP sessions per RR (max)"),
    ("bgppeers", "BGPPeer objects"),
    ("updates_per_rr", "UPDATEs received per RR (max)"),
)


@dataclass(frozen=True, slots=True)
class ClusterShape:
    """What the synthetic clusters copy from the cluster being planned."""

    zones: int = 0
    racks: int = 0
    unhealthy: float = 0.0

    @classmethod
    def of(cls, nodes: Sequence[Node], config: PlanConfig) -> ClusterShape:
        """Distinct zones and racks (by the configured labels) and the unhealthy share."""
        zones = (
            len({n.labels[config.zone_label] for n in nodes if config.zone_label in n.labels})
            if config.zone_label
            else 0
        )
        racks = len({n.labels[config.rack_label] for n in nodes if config.rack_label in n.labels})
        sick = sum(1 for n in nodes if not healthy(n))
        share = sick / len(nodes) if nodes else 0.0
        return cls(zones=zones, racks=racks, unhealthy=min(share, 0.99))


@dataclass(frozen=True, slots=True)
class Point:
    """One planned cluster's figures."""

    nodes: int  # BGP nodes planned
    topology: str  # the topology built (for ``auto``: the one it picked)
    route_reflectors: int
    sessions_per_rr: int  # max over the RRs
    bgppeers: int
    updates_per_rr: int  # max over the RRs: prefixes received (one UPDATE each)


@dataclass(frozen=True, slots=True)
class Series:
    """One topology across the compared sizes; ``points[i]`` is None where it failed."""

    topology: str  # as asked (``auto`` included)
    points: tuple[Point | None, ...]
    errors: tuple[tuple[int, str], ...] = ()  # (size, error message) for each gap

    def values(self, metric: str) -> list[int | None]:
        return [None if p is None else int(getattr(p, metric)) for p in self.points]


@dataclass(frozen=True, slots=True)
class Comparison:
    sizes: tuple[int, ...]
    shape: ClusterShape
    session_budget: int
    series: tuple[Series, ...]
    #: The planned cluster's own size, marked on the plots (None: not marked).
    marked: int | None = None

    def gap_notes(self) -> list[str]:
        """One line per topology with gaps: the sizes and the (first distinct) errors."""
        out: list[str] = []
        for s in self.series:
            if not s.errors:
                continue
            by_error: dict[str, list[int]] = {}
            for size, error in s.errors:
                by_error.setdefault(error, []).append(size)
            for error, sizes in by_error.items():
                at = ", ".join(str(n) for n in sizes)
                out.append(f"{s.topology} cannot be planned at {at} nodes: {error}")
        return out


def measure(nodes: Sequence[Node], config: PlanConfig) -> Point:
    """Plan ``nodes`` and read the figures off the rendered result.

    Raises CalicoRRError when the configuration cannot be planned here.
    """
    made = plan(nodes, config)
    # One family's figures on purpose: the synthetic clusters are IPv4 (compare()
    # copies no family from the cluster), and a family's sessions follow the same
    # BGPPeers and cluster IDs, so a dual-stack cluster's IPv6 graph is this one or
    # a subgraph of it (its nodes without an IPv6 address left out): the topologies
    # rank the same.  `plan` and `report` print every family of the cluster itself.
    graph = plan_graph(made)
    metrics = session_metrics(graph, bgppeer_objects=len(made.bgppeers()))
    # The class engine: the verifier's choice above 48 nodes, held equal to the
    # per-node engine by property tests (tests/test_verify_engines.py).
    updates = Stats.of(fast.propagate(graph, updates=True).rr_updates().values())
    return Point(
        nodes=metrics.nodes,
        topology=made.topology,
        route_reflectors=metrics.route_reflectors,
        sessions_per_rr=metrics.sessions_per_rr.max,
        bgppeers=metrics.bgppeer_objects,
        updates_per_rr=updates.max,
    )


def compare(
    config: PlanConfig,
    *,
    sizes: Sequence[int] = DEFAULT_SIZES,
    shape: ClusterShape = ClusterShape(),
    topologies: Iterable[Topology] = COMPARED,
    marked: int | None = None,
) -> Comparison:
    """Every topology in ``topologies`` planned at every size with ``config``."""
    if not sizes:
        raise InputError("no cluster sizes to compare")
    zone_label = config.zone_label or ZONE_LABEL
    clusters: dict[int, list[Node] | str] = {}
    for n in sizes:
        try:
            clusters[n] = synthetic_cluster(
                n,
                zones=shape.zones,
                racks=shape.racks,
                unhealthy=shape.unhealthy,
                zone_label=zone_label,
                rack_label=config.rack_label,
            )
        except CalicoRRError as exc:
            clusters[n] = str(exc)
    series: list[Series] = []
    for topology in topologies:
        points: list[Point | None] = []
        errors: list[tuple[int, str]] = []
        for n in sizes:
            cluster = clusters[n]
            try:
                if isinstance(cluster, str):
                    raise InputError(cluster)
                points.append(measure(cluster, dataclasses.replace(config, topology=topology)))
            except CalicoRRError as exc:
                points.append(None)
                errors.append((n, str(exc)))
        series.append(Series(topology, tuple(points), tuple(errors)))
    return Comparison(
        sizes=tuple(sizes),
        shape=shape,
        session_budget=config.session_budget,
        series=tuple(series),
        marked=marked,
    )


def sizes_with(sizes: Sequence[int], own: int | None) -> tuple[int, ...]:
    """``sizes`` plus the planned cluster's own size (up to MAX_EXTRA_SIZE), ascending."""
    out = set(sizes)
    if own is not None and 1 <= own <= MAX_EXTRA_SIZE:
        out.add(own)
    return tuple(sorted(out))


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"50,100,1000"`` -> (50, 100, 1000), ascending and distinct."""
    sizes: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise InputError(f"{part!r} is not a positive whole number", field="--plot-sizes")
        sizes.add(int(part))
    if not sizes:
        raise InputError("give at least one cluster size, e.g. 100,1000", field="--plot-sizes")
    return tuple(sorted(sizes))
