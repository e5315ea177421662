"""What the operator would do, without doing it (issue 16): the preview a paused
operator publishes in its status, and what ``calico-rr diff`` prints.  Pure.

The preview does not guess from the plan: it runs :func:`reconcile` itself, pass
after pass, on an in-memory copy of the observed cluster, applying each
Decision's writes to the copy as the datastore would (server-side apply of our
node fields, BGPPeer and CalicoNodeStatus creates and deletes, the mesh flag, the
transition record), until the layout is Steady or the reconcile stops (Blocked).
Waits are skipped: a confirmation is answered as calico-node would answer it once
every new session is up.  So the preview is the operator's own path - the same
end state, and the same number of writes - and a change to the reconcile changes
the preview with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import groupby
from typing import Any

from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.bgp.verify.fanout import FanOut, reflected_fanout
from calico_rr.core.operator.confirm import rr_peer_addresses
from calico_rr.core.operator.decide import reconcile
from calico_rr.core.operator.peerings import spec_of
from calico_rr.core.operator.safety import Verdict, gate_plan
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import (
    Decision,
    NodeBGPStatus,
    NodeState,
    Observed,
    Phase,
    after_writes,
    calico_documents,
    current_cluster_id,
)
from calico_rr.core.planning import planner

#: Names listed per kind in the status (the counts are always complete): a status
#: object must stay small at 5000 nodes.
MAX_NAMES = 100
#: A reconcile converges in a handful of passes (make, confirm, break, mesh off);
#: this bound only stops a reconcile that would not.
MAX_PASSES = 60


@dataclass(frozen=True, slots=True)
class NodeChange:
    """Our labels and annotations on one node, before and after."""

    name: str
    before: Mapping[str, str]
    after: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PeerChange:
    """One of our BGPPeers: created (``before`` None), deleted (``after`` None) or
    changed."""

    name: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None

    @property
    def kind(self) -> str:
        """``create``, ``update`` or ``delete``."""
        if self.before is None:
            return "create"
        return "delete" if self.after is None else "update"


@dataclass(frozen=True, slots=True)
class Preview:
    """The operator's path from the observed cluster to its end state."""

    #: the end state: Steady, Blocked (the reconcile holds), Unfinished (bound hit)
    outcome: str
    #: why the reconcile holds (Blocked), else ""
    held: str
    plan: planner.Plan | None
    #: the safety gate on the planned layout (what ``plan``/``render`` would say)
    gate: Verdict | None
    rrs_before: tuple[str, ...]
    rrs_after: tuple[str, ...]
    nodes: tuple[NodeChange, ...]
    peers: tuple[PeerChange, ...]
    mesh_before: bool
    mesh_after: bool
    #: datastore writes on the way (status writes not counted)
    writes: int
    #: the phases the operator would go through, in order
    steps: tuple[str, ...]
    final: Observed = field(repr=False, compare=False)
    #: the make state the operator would confirm (None: no confirmation on the way)
    made: Observed | None = field(default=None, repr=False, compare=False)

    def make_state_table(self) -> FanOut | None:
        """The add-path table of the busiest node in the make state, where routes
        chain through reflectors (``verify.fanout.reflected_fanout``; None without
        a make state or under fewer than two cluster IDs).  Old and new peerings
        coexist there for as long as the confirmation lasts (docs/OPERATIONS.md).
        Counted on demand: up to a few seconds at 5000 nodes."""
        if self.made is None:
            return None
        made = self.made
        docs = calico_documents(made.nodes, made.peers, made.mesh_enabled)
        return reflected_fanout(build_session_graph(parse_resources(docs).state))

    @property
    def rrs_added(self) -> list[str]:
        return sorted(set(self.rrs_after) - set(self.rrs_before))

    @property
    def rrs_removed(self) -> list[str]:
        return sorted(set(self.rrs_before) - set(self.rrs_after))

    def peer_names(self, kind: str) -> list[str]:
        """Names of the BGPPeers to ``create``, ``update`` or ``delete``."""
        return [c.name for c in self.peers if c.kind == kind]

    @property
    def changes(self) -> bool:
        """Would the operator write anything?"""
        return bool(self.writes or self.nodes or self.peers or self.mesh_before != self.mesh_after)

    @property
    def topology(self) -> str | None:
        return self.plan.topology if self.plan is not None else None

    def summary(self) -> str:
        """One line: what would change."""
        if not self.changes:
            return "nothing to change"
        parts = [
            f"{len(self.rrs_after)} route reflectors ({self.topology})",
            f"+{len(self.rrs_added)}/-{len(self.rrs_removed)} RRs",
            f"{len(self.nodes)} nodes relabelled",
            f"BGPPeers +{len(self.peer_names('create'))} ~{len(self.peer_names('update'))} "
            f"-{len(self.peer_names('delete'))}",
        ]
        if self.mesh_before != self.mesh_after:
            parts.append("mesh " + ("on" if self.mesh_after else "off"))
        parts.append(f"{self.writes} writes")
        text = ", ".join(parts)
        if self.outcome != Phase.STEADY.value:
            text += f"; ends {self.outcome}" + (f": {self.held}" if self.held else "")
        return text

    def to_status(self) -> dict[str, Any]:
        """The ``status.preview`` object (deploy/crds schema)."""
        out: dict[str, Any] = {
            "message": self.summary()[:1000],
            "outcome": self.outcome,
            "routeReflectors": len(self.rrs_after),
            "addRouteReflectors": self.rrs_added[:MAX_NAMES],
            "addRouteReflectorsCount": len(self.rrs_added),
            "removeRouteReflectors": self.rrs_removed[:MAX_NAMES],
            "removeRouteReflectorsCount": len(self.rrs_removed),
            "createBGPPeers": self.peer_names("create")[:MAX_NAMES],
            "updateBGPPeers": self.peer_names("update")[:MAX_NAMES],
            "deleteBGPPeers": self.peer_names("delete")[:MAX_NAMES],
            "nodesChanged": len(self.nodes),
            "meshOff": self.mesh_before and not self.mesh_after,
            "writes": self.writes,
            "steps": list(self.steps),
        }
        if self.topology is not None:
            out["topology"] = self.topology
        if self.held:
            out["held"] = self.held[:1000]
        if self.gate is not None:
            out["safe"] = self.gate.ok
            if not self.gate.ok:
                out["refused"] = "; ".join(self.gate.causes)[:1000]
        return out


# ---------------------------------------------------------------------------
# the simulation
# ---------------------------------------------------------------------------


def _confirmed(obs: Observed, settings: OperatorSettings, d: Decision) -> Observed:
    """``obs`` once a confirmation is answered: the wait is over, and every RR of
    the plan reports each of its new sessions Established."""
    reports: dict[str, NodeBGPStatus] = dict(obs.node_status)
    if d.plan is not None and obs.node_status_supported:
        for node, ips in rr_peer_addresses(d.plan).items():
            reports[node] = NodeBGPStatus(True, ips)
    return replace(obs, node_status=reports, now=obs.now + settings.wait_timeout + 1.0)


@dataclass(frozen=True, slots=True)
class Run:
    """A simulated reconcile: where it ends, the decisions on the way, their
    writes, the outcome and why it holds, and the first state it confirmed (the
    make state a migration or rollout keeps while it waits for sessions)."""

    final: Observed
    decisions: list[Decision]
    writes: int
    outcome: str
    held: str
    confirmed: Observed | None


def simulate(obs: Observed, settings: OperatorSettings) -> Run:
    """Run the reconcile on a copy of ``obs`` to its end."""
    settings = replace(settings, paused=False)
    decisions: list[Decision] = []
    writes = 0
    confirmed: Observed | None = None
    for _ in range(MAX_PASSES):
        d = reconcile(obs, settings)
        decisions.append(d)
        if d.phase == Phase.STEADY and not d.writes:
            return Run(obs, decisions, writes, Phase.STEADY.value, "", confirmed)
        if d.phase == Phase.BLOCKED:
            return Run(obs, decisions, writes, Phase.BLOCKED.value, d.message, confirmed)
        if d.phase == Phase.CONFIRMING and confirmed is None:
            confirmed = obs
        writes += d.writes
        obs = after_writes(obs, d)
        if d.phase == Phase.CONFIRMING:
            obs = _confirmed(obs, settings, d)
    held = f"no end after {MAX_PASSES} passes"
    return Run(obs, decisions, writes, "Unfinished", held, confirmed)


def _ours(ns: NodeState) -> dict[str, str]:
    """Our labels and annotations on a node (annotations prefixed ``@``)."""
    out = ns.owned_label_values()
    out.update({f"@{k}": v for k, v in ns.owned_annotation_values().items()})
    return out


def _rr_nodes(obs: Observed) -> tuple[str, ...]:
    """Nodes carrying a cluster ID we wrote: the route reflectors."""
    return tuple(sorted(n for n, ns in obs.nodes.items() if current_cluster_id(ns) is not None))


def _peer_view(p: Mapping[str, Any]) -> dict[str, Any]:
    labels = dict((p.get("metadata") or {}).get("labels") or {})
    return {"labels": labels, "spec": dict(spec_of(p))}


def _peer_changes(before: Observed, after: Observed) -> list[PeerChange]:
    out: list[PeerChange] = []
    for name in sorted(set(before.peers) | set(after.peers)):
        old, new = before.peers.get(name), after.peers.get(name)
        if old is not None and new is not None and _peer_view(old) == _peer_view(new):
            continue
        out.append(PeerChange(name, old, new))
    return out


def preview(obs: Observed, settings: OperatorSettings) -> Preview:
    """What the operator would write from ``obs`` with ``settings`` (paused or not)."""
    run = simulate(obs, settings)
    final = run.final
    steps = tuple(phase for phase, _ in groupby(d.phase.value for d in run.decisions))
    plan = next((d.plan for d in reversed(run.decisions) if d.plan is not None), None)
    gate = None
    if plan is not None and run.outcome == Phase.STEADY.value and Phase.MESH_OFF.value in steps:
        # The reconcile switched the mesh off only after this very gate passed on
        # this layout (decide._mesh_off_blocker): the verifier need not run twice.
        gate = Verdict(sum(1 for n in plan.nodes if n.addressed), (), ())
    elif plan is not None:
        gate = gate_plan(plan, down=[n.name for n in plan.nodes if not n.ready])
    nodes = []
    for name in sorted(final.nodes):
        before, after = _ours(obs.nodes[name]), _ours(final.nodes[name])
        if before != after:
            nodes.append(NodeChange(name, before, after))
    return Preview(
        outcome=run.outcome,
        held=run.held,
        plan=plan,
        gate=gate,
        rrs_before=_rr_nodes(obs),
        rrs_after=_rr_nodes(final),
        nodes=tuple(nodes),
        peers=tuple(_peer_changes(obs, final)),
        mesh_before=obs.mesh_enabled,
        mesh_after=final.mesh_enabled,
        writes=run.writes,
        steps=steps,
        final=final,
        made=run.confirmed,
    )
