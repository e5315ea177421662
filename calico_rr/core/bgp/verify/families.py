"""The verifier per address family: IPv4, IPv6, or both (dual stack).

calico-node brings up IPv4 sessions (BIRD) and IPv6 sessions (bird6) from the
same resources (``core.bgp.families``).  :func:`verify_families` projects the
state onto each family present, builds that family's session graph and runs the
unchanged :func:`~calico_rr.core.bgp.verify.report.verify` on it.

In a cluster that uses a family, a node with an address of another family but
none of this one holds no route of this family and no other node holds one to
it: every pair involving it is missing in that family, and the report names it
(``nodes_without_address``).  A node with no address at all runs no BGP and is
not counted, as before IPv6 was read.

The verdict holds only when every family present holds.  For an IPv4-only
cluster the top-level fields are exactly IPv4's report (the JSON before families
existed, plus the ``families`` section).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from calico_rr.core.bgp.families import (
    FAMILIES,
    Family,
    families_present,
    family_label,
    project,
)
from calico_rr.core.bgp.sessions import SessionGraph, build_session_graph
from calico_rr.core.bgp.verify.report import Engine, KFailure, VerifyReport, ZoneFailure, verify
from calico_rr.model import CalicoState


@dataclass(frozen=True, slots=True)
class FamilyReport:
    """One family's verification.  ``report`` covers the nodes with an address of
    the family; ``without_address`` are the cluster's other BGP nodes."""

    family: Family
    graph: SessionGraph
    report: VerifyReport
    #: nodes with an address of another family present but none of this one (sorted)
    without_address: tuple[str, ...]
    #: every BGP node of the cluster (any family): the pairs this family must carry
    cluster_nodes: int

    @property
    def pairs_without_address(self) -> int:
        """(node, prefix) pairs missing because one end has no address of this family."""
        n, m = self.cluster_nodes, self.report.nodes
        return n * (n - 1) - m * (m - 1)

    @property
    def missing_pairs(self) -> int:
        return self.report.missing_pairs + self.pairs_without_address

    @property
    def reachable(self) -> bool:
        return self.report.reachable and not self.without_address

    def missing_examples(self, limit: int) -> list[tuple[str, str]]:
        """The verifier's examples, then pairs of nodes without an address of this
        family (each such node lacks every other node's prefix)."""
        out = list(self.report.missing_examples[:limit])
        others = [n.name for n in self.graph.nodes]
        lacking = itertools.product(self.without_address, others)
        return out + list(itertools.islice(lacking, max(limit - len(out), 0)))

    def to_dict(self, examples: int) -> dict[str, Any]:
        out = self.report.to_dict()
        if self.without_address:
            out["reachable"] = False
            out["missing_pairs"] = self.missing_pairs
            out["missing_examples"] = [list(p) for p in self.missing_examples(examples)]
        out["nodes_without_address"] = list(self.without_address)
        out["pairs_without_address"] = self.pairs_without_address
        return out


def family_graphs(state: CalicoState) -> dict[Family, SessionGraph]:
    """The session graph of every family present (IPv4 first)."""
    return {f: build_session_graph(project(state, f)) for f in families_present(state)}


def _zone_indices(
    graph: SessionGraph, zones: Mapping[str, Collection[str]] | None
) -> dict[str, list[int]] | None:
    if not zones:
        return None
    index = graph.index()
    return {z: [index[n] for n in names if n in index] for z, names in zones.items()}


def verify_families(
    state: CalicoState,
    *,
    fail_rrs: int = 1,
    fail_zones: Mapping[str, Collection[str]] | None = None,
    engine: Engine = "auto",
    examples: int = 10,
) -> FamiliesReport:
    """Verify every family present in ``state``.  ``fail_zones`` maps a zone to the
    *names* of its nodes (indices differ per family graph)."""
    return verify_graphs(
        family_graphs(state),
        fail_rrs=fail_rrs,
        fail_zones=fail_zones,
        engine=engine,
        examples=examples,
    )


def verify_graphs(
    graphs: Mapping[Family, SessionGraph],
    *,
    fail_rrs: int = 1,
    fail_zones: Mapping[str, Collection[str]] | None = None,
    engine: Engine = "auto",
    examples: int = 10,
) -> FamiliesReport:
    """:func:`verify_families` on the family graphs (:func:`family_graphs`)."""
    present = [f for f in FAMILIES if f in graphs]
    addressed = {n.name for g in graphs.values() for n in g.nodes}
    parts: list[FamilyReport] = []
    for family in present:
        graph = graphs[family]
        report = verify(
            graph,
            fail_rrs=fail_rrs,
            fail_zones=_zone_indices(graph, fail_zones),
            engine=engine,
            examples=examples,
        )
        have = {n.name for n in graph.nodes}
        parts.append(
            FamilyReport(
                family=family,
                graph=graph,
                report=report,
                without_address=tuple(sorted(addressed - have)),
                cluster_nodes=len(addressed),
            )
        )
    return FamiliesReport(tuple(parts), examples)


@dataclass(frozen=True, slots=True)
class FamiliesReport:
    """Every family's report; the top level is their conjunction."""

    families: tuple[FamilyReport, ...]
    examples: int = 10

    @property
    def primary(self) -> FamilyReport:
        return self.families[0]

    @property
    def reachable(self) -> bool:
        return all(f.reachable for f in self.families)

    def combined(self) -> VerifyReport:
        """The top-level verdict: one family's report as is; for several, every
        verdict AND-ed, losses summed, the worst failure named.  Load figures
        (updates, path diversity) are the first family's (IPv4 when present)."""
        if len(self.families) == 1 and not self.primary.without_address:
            return self.primary.report
        first = self.primary.report
        reports = [f.report for f in self.families]
        worst = max(
            (r.worst_single_rr_failure for r in reports if r.worst_single_rr_failure),
            key=lambda w: w[1],
            default=None,
        )
        examples: list[tuple[str, str]] = []
        for f in self.families:
            examples.extend(f.missing_examples(self.examples - len(examples)))
        return VerifyReport(
            engine=first.engine,
            nodes=self.families[0].cluster_nodes,
            sessions=sum(r.sessions for r in reports),
            reachable=self.reachable,
            missing_pairs=sum(f.missing_pairs for f in self.families),
            missing_examples=tuple(examples),
            loops=any(r.loops for r in reports),
            max_cluster_list=max(r.max_cluster_list for r in reports),
            updates_per_rr=first.updates_per_rr,
            updates_per_session=first.updates_per_session,
            path_diversity=(min(r.path_diversity[0] for r in reports), first.path_diversity[1]),
            single_rr_failure_tolerant=all(r.single_rr_failure_tolerant for r in reports),
            worst_single_rr_failure=worst,
            k_rr_failure=_k_combined([r.k_rr_failure for r in reports]),
            zone_failure=_zones_combined(reports),
        )

    def to_dict(self) -> dict[str, Any]:
        out = self.combined().to_dict()
        out["families"] = {f.family: f.to_dict(self.examples) for f in self.families}
        return out

    def to_text(self) -> list[str]:
        only = self.primary
        if len(self.families) == 1 and only.family == "ipv4" and not only.without_address:
            return only.report.to_text()  # reads exactly as before IPv6 was read
        lines: list[str] = []
        for f in self.families:
            name = family_label(f.family)
            lines.append(f"{name}:")
            lines.extend(f"  {line}" for line in f.report.to_text())
            if f.without_address:
                shown = ", ".join(f.without_address[:10])
                more = len(f.without_address) - 10
                lines.append(
                    f"  {len(f.without_address)} BGP nodes have no {name} address, so no "
                    f"{name} route to or from them ({f.pairs_without_address} pairs): "
                    + shown
                    + (f" and {more} more" if more > 0 else "")
                )
        verdict = "OK" if self.reachable else "FAILED"
        names = " and ".join(family_label(f.family) for f in self.families)
        lines.append(f"every family ({names}): reachability {verdict}")
        return lines


def _k_combined(parts: Sequence[KFailure | None]) -> KFailure | None:
    present = [k for k in parts if k is not None]
    return next((k for k in present if not k.tolerant), present[0] if present else None)


def _zones_combined(reports: Sequence[VerifyReport]) -> dict[str, ZoneFailure]:
    out: dict[str, ZoneFailure] = {}
    for r in reports:
        for zone, z in r.zone_failure.items():
            seen = out.get(zone)
            if seen is None:
                out[zone] = z
            else:
                out[zone] = ZoneFailure(
                    tolerant=seen.tolerant and z.tolerant,
                    missing_pairs=seen.missing_pairs + z.missing_pairs,
                    removed=max(seen.removed, z.removed),
                )
    return out
