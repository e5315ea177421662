"""Is a configuration safe to apply?  The one gate every writing path passes.

Where the verifier answers "is this layout right, and does it survive failures",
this module answers the question asked before anything is written or printed
for applying (``render``, ``plan``, the operator's switch to mesh-off, and the
end state of an uninstall): with the nodes that are down removed, does every
running node that has a BGP address still get a route to every other one, and
does every node still have a peering (with an RR, or the mesh)?  Pure: it reads
Calico documents (nodes as calico-node sees them, BGPPeers, BGPConfiguration)
like the verifier does.

* :func:`check` measures one state (also used on every intermediate state of
  the operator's changes, in tests and demos), in every address family the
  cluster uses (``core.bgp.families``).
* :func:`gate_plan` is the gate for a planner result: it refuses an empty
  cluster, a cluster where no node has a BGP address, a mesh-off layout with no
  route reflector, and any layout that leaves a node without a route, and says
  which nodes would be cut off and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from calico_rr.core.bgp.families import Family, families_of_nodes, family_label
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.bgp.verify import fast
from calico_rr.core.bgp.verify.families import family_graphs

if TYPE_CHECKING:
    from calico_rr.core.planning.planner import Plan

#: Names listed in one explanation before "and N more".
_LISTED = 10


@dataclass(frozen=True, slots=True)
class Safety:
    nodes: int
    missing_pairs: int
    #: running nodes with no BGP session at all
    isolated: tuple[str, ...]
    #: (node, origin) pairs: ``node`` holds no route to ``origin``'s prefix
    examples: tuple[tuple[str, str], ...]
    #: running nodes that miss at least one other node's prefix (isolated ones too)
    cut_off: tuple[str, ...] = ()
    #: the address families that fail, when the cluster runs more than IPv4
    failing_families: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.missing_pairs == 0 and not self.isolated

    def describe(self) -> str:
        if self.ok:
            return f"safe: {self.nodes} running nodes all reach each other"
        parts = [f"{self.missing_pairs} missing (node, prefix) pairs"]
        if self.failing_families:
            parts[0] += f" in {' and '.join(family_label(f) for f in self.failing_families)}"
        if self.isolated:
            parts.append(f"isolated: {', '.join(self.isolated[:5])}")
        if self.examples:
            parts.append(f"e.g. {self.examples[0][0]} lacks {self.examples[0][1]}")
        return "; ".join(parts)


def check(docs: Iterable[Any], down: Collection[str] = ()) -> Safety:
    """Reachability among the running nodes of the cluster described by ``docs``, in
    every address family the cluster uses (IPv4 and IPv6 sessions come from the same
    resources: a change can cut IPv6 routes while IPv4 keeps them)."""
    return check_families(family_graphs(parse_resources(docs, where="cluster").state), down)


def check_families(graphs: Mapping[Family, SessionGraph], down: Collection[str] = ()) -> Safety:
    """Every family's :func:`check_graph`, combined: the state is safe only when each
    family is.  Within a family only the nodes with an address of it count: a node
    without one never had routes of that family, and no configuration gives it any."""
    parts = {f: check_graph(g, down) for f, g in graphs.items()}
    if list(parts) == ["ipv4"]:
        return parts["ipv4"]
    values = list(parts.values())
    examples = [e for s in values for e in s.examples][:3]
    return Safety(
        nodes=max((s.nodes for s in values), default=0),
        missing_pairs=sum(s.missing_pairs for s in values),
        isolated=tuple(sorted({n for s in values for n in s.isolated})),
        examples=tuple(examples),
        cut_off=tuple(sorted({n for s in values for n in s.cut_off})),
        failing_families=tuple(f for f, s in parts.items() if not s.ok),
    )


def check_graph(graph: SessionGraph, down: Collection[str] = ()) -> Safety:
    """:func:`check` on a session graph already built from the documents."""
    index = graph.index()
    removed = [index[n] for n in down if n in index]
    live = graph.without(removed) if removed else graph
    result = fast.propagate(live, updates=False)
    names = [n.name for n in live.nodes]
    isolated = tuple(
        names[i] for i in range(len(live.nodes)) if len(live.nodes) > 1 and live.degree(i) == 0
    )
    lacking = set(result.lacking_nodes()) | {i for i, n in enumerate(names) if n in isolated}
    return Safety(
        nodes=len(live.nodes),
        missing_pairs=result.missing_pairs,
        isolated=isolated,
        examples=tuple((names[x], names[o]) for x, o in result.missing_examples(3)),
        cut_off=tuple(names[i] for i in sorted(lacking)),
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's answer: apply, or refuse because of ``causes``."""

    #: nodes with a BGP address the configuration was checked for
    bgp_nodes: int
    #: nodes the configuration would leave without a route to some node (sorted)
    cut_off: tuple[str, ...]
    #: one sentence per reason to refuse; empty when the configuration is safe
    causes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.causes

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "bgp_nodes": self.bgp_nodes,
            "cut_off": list(self.cut_off),
            "causes": list(self.causes),
        }

    def explain(self) -> str:
        """The refusal as a few lines (empty when ok)."""
        if self.ok:
            return ""
        lines = list(self.causes)
        if self.cut_off:
            shown = ", ".join(self.cut_off[:_LISTED])
            if len(self.cut_off) > _LISTED:
                shown += f" and {len(self.cut_off) - _LISTED} more"
            lines.append(f"nodes that would be cut off: {shown}")
        return "\n".join(lines)


def gate_plan(
    plan: Plan,
    *,
    down: Collection[str] = (),
    graph: SessionGraph | None = None,
    graphs: Mapping[Family, SessionGraph] | None = None,
) -> Verdict:
    """May ``plan``'s resources be applied?  ``down``: nodes known not to run BGP now
    (the operator passes its NotReady nodes; the CLI checks every node).  ``graph``:
    the plan's IPv4 session graph when the caller has built it already
    (``plan_graph``; used for an IPv4-only plan); ``graphs``: every family's
    (``plan_graphs``).  Every address family the nodes use is checked."""
    nodes = plan.nodes
    addressed = [n.name for n in nodes if n.addressed]
    without = [n.name for n in nodes if not n.addressed]
    if not nodes:
        return Verdict(
            0,
            (),
            (
                "the cluster has no nodes: there is nothing to plan, and a configuration "
                "that switches the mesh off with no route reflector would cut off every "
                "node that joins",
            ),
        )
    if not addressed:
        return Verdict(
            0,
            tuple(without),
            (
                f"none of the {len(nodes)} nodes has a BGP address "
                "(annotation projectcalico.org/IPv4Address or IPv6Address, or an "
                "InternalIP): no node can "
                "be a route reflector, and with the mesh off every node would be without "
                "BGP sessions once calico-node gives it an address",
            ),
        )
    mesh_off = not plan.bgp_configuration()["spec"].get("nodeToNodeMeshEnabled", True)
    if mesh_off and not plan.layout.holders:
        return Verdict(
            len(addressed),
            tuple(addressed),
            (f"no route reflector could be placed: {_ineligible_text(plan)}",),
        )
    # ``graph`` is the IPv4 graph (``plan_graph``): enough only for an IPv4-only plan.
    if graphs is not None:
        result = check_families(graphs, down)
    elif graph is not None and families_of_nodes(nodes) == ("ipv4",):
        result = check_graph(graph, down)
    else:
        result = check(plan.calico_documents(), down)
    if result.ok:
        return Verdict(len(addressed), (), ())
    cause = f"the configuration leaves nodes without routes: {result.describe()}"
    return Verdict(len(addressed), result.cut_off, (cause,))


def _ineligible_text(plan: Plan) -> str:
    """``none of the 7 nodes is eligible (5 not Ready, 2 cordoned)``."""
    reasons = Counter(plan.ineligible.values())
    counted = ", ".join(f"{n} {why}" for why, n in reasons.most_common())
    total = len(plan.nodes)
    if len(plan.ineligible) == total:
        return f"none of the {total} nodes is eligible ({counted})"
    return f"no eligible node was chosen ({counted or 'no ineligible node'})"
