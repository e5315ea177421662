"""The figures ``calico-rr plan`` reports, measured on the rendered resources.

The plan is rendered, the result is read back exactly as calico-node would read
it (``resources.parse_resources``), the session graph is built from that
(``sessions.build_session_graph``) and every number comes from the graph - never
from what the planner meant to do.  A planner bug therefore shows up in these
figures (and in the verifier) instead of hiding behind them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from calico_rr.core.bgp.families import Family, families_present, project
from calico_rr.core.bgp.metrics import session_metrics
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import SessionGraph, build_session_graph
from calico_rr.core.bgp.verify.families import family_graphs
from calico_rr.core.bgp.verify.fanout import reflected_fanout
from calico_rr.core.planning.planner import Plan
from calico_rr.core.planning.topologies import multi
from calico_rr.model import CalicoState


def plan_state(plan: Plan) -> CalicoState:
    """The plan's resources read back as calico-node reads them."""
    return parse_resources(plan.calico_documents(), where="rendered plan").state


def plan_graphs(plan: Plan) -> dict[Family, SessionGraph]:
    """The session graph of every address family the plan's nodes use (IPv4 first)."""
    return family_graphs(plan_state(plan))


def plan_graph(plan: Plan) -> SessionGraph:
    """The BGP session graph calico-node would build from the plan's resources: the
    IPv4 one, or the IPv6 one in an IPv6-only cluster (the first family present)."""
    state = plan_state(plan)
    return build_session_graph(project(state, families_present(state)[0]))


def family_rows(graphs: Mapping[Family, SessionGraph], bgppeers: int) -> dict[str, Any]:
    """Per family: its BGP nodes, sessions, sessions per RR, and the nodes that
    run BGP in another family but have no address of this one."""
    everyone = {n.name for g in graphs.values() for n in g.nodes}
    out: dict[str, Any] = {}
    for family, graph in graphs.items():
        metrics = session_metrics(graph, bgppeer_objects=bgppeers).to_dict()
        have = {n.name for n in graph.nodes}
        out[family] = {
            "nodes": metrics["nodes"],
            "route_reflectors": metrics["route_reflectors"],
            "total_sessions": metrics["total_sessions"],
            "sessions_per_rr": metrics["sessions_per_rr"],
            "sessions_per_client": metrics["sessions_per_client"],
            "nodes_without_address": sorted(everyone - have),
        }
    return out


def summarize(
    plan: Plan,
    *,
    notes: Sequence[str] = (),
    graph: SessionGraph | None = None,
    verification: dict[str, Any] | None = None,
    graphs: Mapping[Family, SessionGraph] | None = None,
) -> dict[str, Any]:
    """The ``plan`` report.  ``graph``: the first family's graph (:func:`plan_graph`);
    ``graphs``: every family's, for the per-family section (``families``)."""
    graph = graph if graph is not None else plan_graph(plan)
    # BGPPeer objects counted on the rendered stream, like everything else here.
    metrics = session_metrics(graph, bgppeer_objects=len(plan.bgppeers())).to_dict()
    n = metrics["nodes"]
    out: dict[str, Any] = {
        "nodes": n,
        "topology": plan.topology,
        "route_reflectors": metrics["route_reflectors"],
        "redundancy": plan.layout.redundancy,
        "cluster_ids": metrics["cluster_ids"],
        "total_sessions": metrics["total_sessions"],
        "full_mesh_sessions": n * (n - 1) // 2,
        "bgppeer_objects": metrics["bgppeer_objects"],
        "sessions_per_rr": metrics["sessions_per_rr"],
        "clients_per_rr": metrics["clients_per_rr"],
        "rr_peers_per_rr": metrics["rr_peers_per_rr"],
        "sessions_per_client": metrics["sessions_per_client"],
        "clients_without_rr": metrics["clients_without_rr"],
        "eligible_nodes": len(plan.view.eligible),
        "ineligible_nodes": len(plan.ineligible),
        "nodes_without_ip": len(graph.no_ip),
        "node_changes": len(plan.node_changes()),
        "shape": dict(plan.layout.shape),
        "auto_reason": plan.auto_reason,
        "warnings": list(plan.warnings),
        "notes": list(notes),
    }
    # the busiest node's add-path table; multi's own warning
    # (topologies.multi.fanout_warning) already covers its worst case
    found = reflected_fanout(graph)
    out["add_path"] = None if found is None else found.to_dict()
    if found is not None and found.warns and plan.topology != multi.NAME:
        out["warnings"].append(
            f"{found.describe()}: fewer RRs or cluster IDs, or the hierarchy topology "
            "(docs/TOPOLOGIES.md)"
        )
    if graphs is not None:
        out["families"] = family_rows(graphs, metrics["bgppeer_objects"])
    if verification is not None:
        out["verification"] = verification
    return out
