"""An in-memory cluster that executes :class:`~calico_rr.core.operator.state.Decision`
batches one write at a time, for unit and property tests of the pure reconcile.

It models exactly what the reconcile relies on from the API server:
server-side apply (fields we applied before and omit now are removed, other
owners' labels stay), BGPPeer create/update/delete, the mesh flag and the
transition record.  After every single write it can call a checker, so a test
can assert on *every* intermediate state, and it can stop after ``k`` writes to
simulate an operator killed mid-batch.  The integration tests do the same on a
real API server; this one is for exhaustive and randomised runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from calico_rr.core.formats.etcd import is_managed
from calico_rr.core.operator.decide import reconcile
from calico_rr.core.operator.safety import Safety, check
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import (
    Decision,
    NodeApply,
    NodeBGPStatus,
    NodeState,
    Observed,
    Phase,
    calico_documents,
    server_side_apply,
)
from calico_rr.core.planning.candidates import healthy
from calico_rr.model import Node

Checker = Callable[["SimCluster", str], None]


class Crash(Exception):
    """Raised by :meth:`SimCluster.execute` when its write budget runs out."""


@dataclass
class SimCluster:
    nodes: dict[str, NodeState] = field(default_factory=dict)
    #: every BGPPeer (ours carry the managed-by label)
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)
    mesh_enabled: bool = True
    transition: dict[str, Any] | None = None
    now: float = 1000.0
    writes: int = 0
    log: list[str] = field(default_factory=list)
    #: nodes added by :meth:`add` since the last whole batch of writes, untouched
    joined: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, nodes: Iterable[Node]) -> SimCluster:
        return cls(nodes={n.name: NodeState(n) for n in nodes})

    def clone(self) -> SimCluster:
        return copy.deepcopy(self)

    # -- cluster events ----------------------------------------------------------

    def add(self, node: Node) -> None:
        self.nodes[node.name] = NodeState(node)
        self.joined.add(node.name)

    def remove(self, name: str) -> None:
        del self.nodes[name]
        self.joined.discard(name)

    def update(self, name: str, **changes: Any) -> None:
        ns = self.nodes[name]
        self.nodes[name] = replace(ns, node=replace(ns.node, **changes))

    def set_ready(self, name: str, ready: bool) -> None:
        conds = dict(self.nodes[name].node.conditions)
        conds["Ready"] = "True" if ready else "False"
        self.update(name, conditions=conds)

    # -- what the operator sees --------------------------------------------------

    def observed(self) -> Observed:
        ours = {n: p for n, p in self.peers.items() if is_managed(p)}
        return Observed(
            nodes=dict(self.nodes),
            peers=ours,
            mesh_enabled=self.mesh_enabled,
            transition=self.transition,
            node_status={},
            now=self.now,
        )

    def down(self) -> set[str]:
        """Nodes whose BGP is assumed dead (not healthy)."""
        return {n for n, ns in self.nodes.items() if not ns.node.ready}

    def calico_documents(self) -> list[dict[str, Any]]:
        return calico_documents(self.nodes, self.peers, self.mesh_enabled)

    def safety(self, down: Collection[str] | None = None) -> Safety:
        return check(self.calico_documents(), self.down() if down is None else down)

    # -- executing a decision --------------------------------------------------------

    def execute(
        self, decision: Decision, *, budget: int | None = None, checker: Checker | None = None
    ) -> None:
        """Apply ``decision``'s writes in the documented order; raise :class:`Crash`
        once ``budget`` writes are done (the rest are lost)."""
        steps: list[tuple[str, Callable[[], object]]] = []
        if decision.transition_set and decision.transition is not None:
            rec = dict(decision.transition)
            steps.append(("status", partial(setattr, self, "transition", rec)))
        for p in decision.peer_applies:
            steps.append((f"apply bgppeer {p['metadata']['name']}", partial(self._apply_peer, p)))
        for a in decision.node_applies:
            steps.append((f"apply node {a.name}", partial(self._apply_node, a)))
        for name in decision.peer_deletes:
            steps.append((f"delete bgppeer {name}", partial(self.peers.pop, name)))
        if decision.mesh is not None:
            mesh = decision.mesh
            steps.append((f"mesh {mesh}", partial(setattr, self, "mesh_enabled", mesh)))
        if decision.transition_set and decision.transition is None:
            steps.append(("status clear", partial(setattr, self, "transition", None)))
        for what, step in steps:
            if budget is not None and budget <= 0:
                raise Crash(what)
            step()
            self.writes += 1
            self.log.append(what)
            if budget is not None:
                budget -= 1
            if checker is not None:
                checker(self, what)
        self.joined.clear()  # the operator has answered every join it saw

    def _apply_peer(self, obj: dict[str, Any]) -> None:
        self.peers[str(obj["metadata"]["name"])] = copy.deepcopy(obj)

    def _apply_node(self, a: NodeApply) -> None:
        self.joined.discard(a.name)
        server_side_apply(self.nodes, a)

    # -- driving the operator ------------------------------------------------------

    def run(
        self,
        settings: OperatorSettings,
        *,
        checker: Checker | None = None,
        max_rounds: int = 200,
        tick: float | None = None,
        before: Callable[[SimCluster, Decision], None] | None = None,
    ) -> list[Decision]:
        """Reconcile until Steady, advancing the clock by each requeue (or ``tick``);
        ``before`` sees each decision and the state it is about to change."""
        out: list[Decision] = []
        for _ in range(max_rounds):
            d = reconcile(self.observed(), settings)
            out.append(d)
            if d.phase in (Phase.STEADY, Phase.PAUSED):
                return out
            if before is not None:
                before(self, d)
            self.execute(d, checker=checker)
            if d.requeue_after is not None:
                self.now += tick if tick is not None else d.requeue_after
        raise AssertionError(f"no convergence in {max_rounds} rounds: {out[-1].message}")


def status_all_established(sim: SimCluster) -> dict[str, NodeBGPStatus]:
    """CalicoNodeStatus as calico-node would report it if every configured
    session between running nodes came up, in every family (``peersV4`` and
    ``peersV6`` read together), for NodeStatus-mode tests."""
    from calico_rr.core.bgp.resources import parse_resources
    from calico_rr.core.bgp.verify.families import family_graphs

    graphs = family_graphs(parse_resources(sim.calico_documents()).state)
    live = {n for n, ns in sim.nodes.items() if healthy(ns.node)}
    up: dict[str, set[str]] = {}
    for graph in graphs.values():
        for i, cn in enumerate(graph.nodes):
            ips = up.setdefault(cn.name, set())
            if cn.name not in live:
                continue
            ips.update(
                graph.nodes[j].ip or "" for j in graph.peers(i) if graph.nodes[j].name in live
            )
    return {name: NodeBGPStatus(True, frozenset(ips)) for name, ips in up.items()}
