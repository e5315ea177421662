"""The planner: nodes + config -> layout + Calico resources.  Pure.

Data flow (docs/ARCHITECTURE.md):

    nodes --view()--> ClusterView --topology.build()--> Layout
          --render--> node changes, BGPPeers, BGPConfiguration
          --calico_view + parse_resources--> CalicoState --build_session_graph--> metrics

The planner keeps no state of its own: what it decided last time is in the
nodes' labels (``calico-rr.io/rr-slot``, ``calico-rr.io/group``, ...), which it
reads back to keep every still-valid assignment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from calico_rr.core.formats.kube import node_to_k8s
from calico_rr.core.limits import MAX_NODES
from calico_rr.core.planning import render
from calico_rr.core.planning.candidates import Degrading, healthy, ineligibility
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.sizing import rr_count
from calico_rr.core.planning.topologies import auto, hierarchy, multi, quorum, single
from calico_rr.core.planning.topologies.base import ClusterView, Layout
from calico_rr.errors import InputError
from calico_rr.model import Node

TOPOLOGY_BUILDERS: dict[str, Callable[[ClusterView, PlanConfig, int], Layout]] = {
    single.NAME: single.build,
    multi.NAME: multi.build,
    quorum.NAME: quorum.build,
    hierarchy.NAME: hierarchy.build,
}


@dataclass(frozen=True, slots=True)
class Plan:
    config: PlanConfig
    nodes: tuple[Node, ...]
    view: ClusterView
    layout: Layout
    ineligible: dict[str, str]
    auto_reason: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def topology(self) -> str:
        return self.layout.topology

    @property
    def degrading(self) -> tuple[str, ...]:
        """The warnings that make this layout Degraded (:class:`Degrading`: RRs short,
        an RR without a family its clients use, add-path tables over budget)."""
        return tuple(w for w in self.warnings if isinstance(w, Degrading))

    def node_changes(self) -> list[render.NodeChange]:
        return render.node_changes(self.view.nodes, self.layout)

    def bgppeers(self) -> list[dict[str, Any]]:
        return render.bgppeers(self.layout, self.config)

    def bgp_configuration(self) -> dict[str, Any]:
        return render.bgp_configuration(self.config)

    def resources(self, *, include_nodes: bool = False) -> list[dict[str, Any]]:
        """The stream ``calico-rr render`` writes.  Without ``include_nodes``: one
        apply configuration per changed node (our labels/annotation only)."""
        docs: list[dict[str, Any]] = []
        if include_nodes:
            docs.extend(self.whole_nodes())
        else:
            for ch in self.node_changes():
                docs.append(render.node_apply(ch.name, ch.labels, ch.cluster_id))
        docs.extend(self.bgppeers())
        docs.append(self.bgp_configuration())
        return docs

    def whole_nodes(self) -> list[dict[str, Any]]:
        cids = self.layout.cluster_ids()
        out = []
        for node in self.view.nodes:
            labels, annotations = render.desired_view(node, self.layout, cids)
            remove_l = [k for k in node.labels if k not in labels]
            remove_a = [k for k in node.annotations if k not in annotations]
            out.append(
                node_to_k8s(
                    node,
                    labels=labels,
                    annotations=annotations,
                    remove_labels=remove_l,
                    remove_annotations=remove_a,
                )
            )
        return out

    def applied_nodes(self) -> list[Node]:
        """The input nodes as they will be once the plan is applied (labels and
        cluster ID annotation); what a later ``plan`` call reads back."""
        cids = self.layout.cluster_ids()
        out = []
        for node in self.view.nodes:
            labels, annotations = render.desired_view(node, self.layout, cids)
            out.append(replace(node, labels=labels, annotations=annotations))
        return out

    def calico_documents(self) -> list[dict[str, Any]]:
        """Nodes as calico-node sees them after the plan, plus our BGP objects."""
        return [
            *render.calico_view(self.view.nodes, self.layout),
            *self.bgppeers(),
            self.bgp_configuration(),
        ]


def make_view(nodes: Sequence[Node], config: PlanConfig) -> tuple[ClusterView, dict[str, str]]:
    ordered = tuple(sorted(nodes, key=lambda n: n.name))
    ineligible: dict[str, str] = {}
    eligible = []
    for n in ordered:
        why = ineligibility(n, config)
        if why is None:
            eligible.append(n)
        else:
            ineligible[n.name] = why
    zone_of: dict[str, str | None] = {}
    distinct: set[str] = set()
    if config.zone_label:
        for n in ordered:
            z = n.labels.get(config.zone_label)
            zone_of[n.name] = z
            if z is not None and n.addressed:
                distinct.add(z)
    zones = tuple(sorted(distinct)) if len(distinct) >= 2 else ()
    if not zones:
        zone_of = dict.fromkeys(zone_of, None)
    return ClusterView(ordered, tuple(eligible), zone_of, zones), ineligible


def plan(nodes: Sequence[Node], config: PlanConfig) -> Plan:
    """Plan route reflectors for ``nodes`` (model.Node) under ``config``."""
    if len(nodes) > MAX_NODES:
        raise InputError(f"at most {MAX_NODES} nodes can be planned, got {len(nodes)}")
    view, ineligible = make_view(nodes, config)
    bgp_nodes = [n for n in view.nodes if n.addressed]
    ready = sum(1 for n in bgp_nodes if healthy(n))
    sized = config.rrs if config.rrs is not None else rr_count(ready, config.sizing)
    sized = min(sized, len(view.eligible))
    topology: str = config.topology
    reason: str | None = None
    if topology == "auto":
        topology, sized, reason = auto.choose(
            len(bgp_nodes), len(view.eligible), sized, config, zones=len(view.zones)
        )
    layout = TOPOLOGY_BUILDERS[topology](view, config, sized)
    warnings = [*_clamp_warnings(config, layout, len(view.eligible)), *layout.warnings]
    if not view.eligible and bgp_nodes:
        warnings.append(Degrading("no node is eligible to be a route reflector"))
    return Plan(
        config=config,
        nodes=view.nodes,
        view=view,
        layout=layout,
        ineligible=ineligible,
        auto_reason=reason,
        warnings=tuple(warnings),
    )


def _clamp_warnings(config: PlanConfig, layout: Layout, eligible: int) -> list[str]:
    """Say when an explicit count could not be honoured (issue 14: never clamp silently)."""
    out = []
    if config.rrs is not None and config.rrs > eligible:
        out.append(
            f"{config.rrs} route reflectors were asked for but only {eligible} nodes are "
            f"eligible: planned {len(layout.holders)}"
        )
    if layout.topology != single.NAME and config.redundancy > layout.redundancy:
        out.append(
            f"redundancy {config.redundancy} is more than this layout can give "
            f"(RRs available per client: {layout.redundancy}): using {layout.redundancy}"
        )
    return out
