"""The lab's calico-node: turns datastore objects into BIRD configs, reports sessions.

:class:`LabAgent` does for every lab node what calico-node's confd does for its
own node (domain.md 2): read the Calico state, compute the node's peerings and
session kinds (the same session graph the verifier uses), render the node's BIRD
configuration (``calico_rr.core.lab.bird``) and reload BIRD only when the file
changes.  One agent object serves all the lab's nodes (they share the datastore
view), but each node's config depends on that node alone and each BIRD is
reloaded on its own, as each calico-node would.

``calico_rr.adapters.lab.watcher`` feeds the agent from either datastore.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from calico_rr.adapters.lab.birdctl import BirdError
from calico_rr.adapters.lab.net import LabError, LabNetwork, LabNode
from calico_rr.core.bgp.sessions import SessionGraph, build_session_graph
from calico_rr.core.lab.bird import (
    BgpTimers,
    BirdNode,
    bird_nodes,
    protocol_names,
    render_bird_config,
)
from calico_rr.core.lab.prediction import compare_routes, expected_sessions, predicted_routes
from calico_rr.model import CalicoState

__all__ = ["LabAgent", "Observation"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Observation:
    """One look at every running BIRD."""

    #: node -> peer node names with an Established session
    established: dict[str, frozenset[str]]
    #: node -> other nodes whose pod block it holds
    held: dict[str, frozenset[str]]


class LabAgent:
    """confd + BIRD reloads for every node of ``lab``."""

    #: what renders the BIRD configs (``calico-rr lab --renderer``)
    renderer = "imitation"

    def __init__(
        self,
        lab: LabNetwork,
        *,
        timers: BgpTimers | None = None,
        graceful_restart: int | None = 120,
        workload_free: Collection[str] = (),
    ) -> None:
        self.lab = lab
        #: nodes without workloads (dedicated route reflectors): no pod block
        self.workload_free = frozenset(workload_free)
        self.timers = timers if timers is not None else BgpTimers()
        self.graceful_restart = graceful_restart
        self.state: CalicoState | None = None
        self.graph: SessionGraph | None = None
        self.reloads = 0
        self.errors: list[str] = []
        self.config_changes = 0
        self._last: dict[str, str] = {}
        self._peer_of: dict[str, dict[str, str]] = {}  # node -> protocol -> peer name
        self._lock = threading.RLock()
        #: nodes whose BIRD was stopped on purpose: not restarted by apply()
        self.held_down: set[str] = set()
        self._by_ip = {n.ip: n for n in lab.nodes}
        self._by_block = {n.block: n.name for n in lab.nodes if n.name not in self.workload_free}

    # -- configuration ------------------------------------------------------

    def apply(self, state: CalicoState) -> list[str]:
        """Bring every lab node's BIRD to ``state``; the nodes reconfigured.

        Raises LabError when the state names a BGP node that is not a lab node, or
        a lab node under another address (the lab cannot emulate it)."""
        graph = self._graph(state)
        blocks: dict[str, str | None] = {
            n.name: None if n.name in self.workload_free else n.block for n in self.lab.nodes
        }
        configs = {b.name: b for b in bird_nodes(graph, state, blocks)}
        changed: list[str] = []
        with self._lock:
            self.state, self.graph = state, graph
            for lab_node in self.lab.nodes:
                bn = configs.get(lab_node.name) or BirdNode(
                    lab_node.name, lab_node.ip, state.default_asn(), None, blocks[lab_node.name], ()
                )
                text = render_bird_config(
                    bn,
                    graceful_restart=self.graceful_restart,
                    socket_hint=str(lab_node.sock),
                    timers=self.timers,
                )
                protos = zip(protocol_names(bn), bn.peers, strict=True)
                self._peer_of[lab_node.name] = {proto: peer.name for proto, peer in protos}
                if lab_node.name in self.held_down:
                    self._last[lab_node.name] = text  # used when it is restarted
                    continue
                if self._last.get(lab_node.name) == text and lab_node.running:
                    continue
                self._write(lab_node, text)
                changed.append(lab_node.name)
        if changed:
            self.config_changes += 1
        return changed

    def _graph(self, state: CalicoState) -> SessionGraph:
        graph = build_session_graph(state)
        for node in graph.nodes:
            lab_node = self._by_ip.get(node.ip or "")
            if lab_node is None or lab_node.name != node.name:
                raise LabError(
                    f"node {node.name} ({node.ip}) is not a lab node: the lab emulates "
                    f"{len(self.lab.nodes)} nodes named {self.lab.name_prefix}NN on 10.99.0.0/16"
                )
        return graph

    def set_state(self, state: CalicoState) -> SessionGraph:
        """Take ``state`` as the verifier's view (sessions and routes to expect)
        without rendering anything (another renderer writes the configs)."""
        graph = self._graph(state)
        with self._lock:
            self.state, self.graph = state, graph
        return graph

    def peer_names(self, node: LabNode) -> dict[str, str]:
        """BIRD protocol name -> peer node name, for the node's sessions."""
        with self._lock:
            return dict(self._peer_of.get(node.name, {}))

    def _write(self, node: LabNode, text: str) -> None:
        if not node.running:
            self.lab.start_bird(node, text)
        else:
            node.conf.write_text(text)
            assert node.control is not None
            answer = node.control.configure()
            if "rror" in answer:
                raise LabError(f"BIRD of {node.name} rejected its config: {answer}")
            self.reloads += 1
        self._last[node.name] = text

    def kill(self, node: LabNode, *, clean: bool = False) -> None:
        """Stop the node's BIRD and keep it down until :meth:`restart`: SIGKILL (a
        crash: no NOTIFICATION, so graceful-restart peers keep its routes as stale
        for the restart time) or, ``clean``, SIGTERM (BIRD sends Cease and its
        peers drop its routes at once: an RR taken down)."""
        with self._lock:
            self.held_down.add(node.name)
            self.lab.stop_bird(node, kill=not clean)

    def restart(self, node: LabNode) -> None:
        """Start a stopped node's BIRD again with its latest config."""
        with self._lock:
            text = self._last.get(node.name)
            if text is None:
                raise LabError(f"no config for {node.name} yet")
            self.held_down.discard(node.name)
            self.lab.start_bird(node, text)

    # -- observation --------------------------------------------------------

    def sessions(self, node: LabNode) -> dict[str, str]:
        """Peer node name -> BGP state text of every session of the node's BIRD.

        A peer can have two protocols: confd renders a ``Mesh_`` and a ``Node_``
        protocol to the same address when the mesh is on and a BGPPeer selects the
        same pair; BIRD runs one session per neighbor address and leaves the other
        Idle.  The pair is up when one of them is Established."""
        control = node.control  # one read: a kill on another thread may clear it
        if control is None or not node.running:
            return {}
        names = self.peer_names(node)
        out: dict[str, str] = {}
        for proto in control.protocols():
            if proto.proto == "BGP" and proto.name in names:
                peer = names[proto.name]
                if not out.get(peer, "").startswith("Established"):
                    out[peer] = proto.info or proto.state
        return out

    def held(self, node: LabNode) -> frozenset[str]:
        """Other lab nodes whose pod block the node's BIRD holds."""
        control = node.control  # one read: a kill on another thread may clear it
        if control is None or not node.running:
            return frozenset()
        return frozenset(
            self._by_block[prefix]
            for prefix in control.routes()
            if prefix in self._by_block and self._by_block[prefix] != node.name
        )

    def observe(self) -> Observation:
        est: dict[str, frozenset[str]] = {}
        held: dict[str, frozenset[str]] = {}
        for node in self.lab.nodes:
            try:
                sessions = self.sessions(node)
                est[node.name] = frozenset(
                    peer for peer, info in sessions.items() if info.startswith("Established")
                )
                held[node.name] = self.held(node)
            except BirdError:
                est[node.name], held[node.name] = frozenset(), frozenset()
        return Observation(est, held)

    def status(self, *, down: frozenset[str] = frozenset()) -> dict[str, Any]:
        """Sessions and routes against the current state's prediction.

        ``down`` names nodes whose BIRD is deliberately stopped: their sessions and
        routes are left out of the session count and the comparison is made on
        the graph without them."""
        with self._lock:
            graph = self.graph
        if graph is None:
            raise LabError("the agent has no state yet")
        idx = graph.index()
        if down:
            graph = graph.without(idx[n] for n in down if n in idx)
        want = expected_sessions(graph)
        obs = self.observe()
        up = {
            pair
            for pair in want
            if all(
                other in obs.established.get(me, frozenset())
                for me, other in (tuple(pair), tuple(pair)[::-1])
            )
        }
        down_pairs = sorted(tuple(sorted(pair)) for pair in set(want) - up)
        origins = [n.name for n in graph.nodes if n.name not in self.workload_free]
        predicted = predicted_routes(graph, origins)
        cmp = compare_routes(predicted, obs.held, origins)
        names = sorted(predicted)
        return {
            "nodes": len(names),
            "sessions_expected": len(want),
            "sessions_established": len(up),
            # expected sessions not Established on both ends, for failure messages
            "sessions_down": down_pairs,
            "missing_pairs": len(cmp.observed_missing),
            "verifier_missing_pairs": len(cmp.predicted_missing),
            "bird_reachable": not cmp.observed_missing,
            "matches_verifier": cmp.matches,
            "comparison": cmp,
        }

    def wait(
        self,
        timeout: float,
        *,
        stable: float = 1.0,
        down: frozenset[str] = frozenset(),
        since: float | None = None,
    ) -> dict[str, Any]:
        """Poll :meth:`status` until every expected session is Established and
        BIRD's tables equal the verifier's prediction, unchanged for ``stable``
        seconds.  The result carries ``converged`` and ``seconds_to_converge``
        (from ``since``, default now, to the first poll of the stable window)."""
        start = since if since is not None else time.monotonic()
        deadline = time.monotonic() + timeout
        first_ok: float | None = None
        last_key: object = None
        while True:
            now = time.monotonic()
            if self.graph is None:  # nothing applied yet: the watcher is still syncing
                if now > deadline:
                    raise LabError("the agent got no state to apply")
                time.sleep(0.1)
                continue
            st = self.status(down=down)
            ok = st["sessions_established"] == st["sessions_expected"] and st["matches_verifier"]
            key = (st["sessions_established"], st["comparison"].observed_missing)
            if ok and first_ok is not None and key == last_key:
                if now - first_ok >= stable:
                    st["converged"] = True
                    st["seconds_to_converge"] = round(first_ok - start, 2)
                    return st
            elif ok:
                first_ok = now
            else:
                first_ok = None
            last_key = key
            if now > deadline:
                st["converged"] = False
                st["seconds_to_converge"] = None
                return st
            time.sleep(0.1)

    def kernel_mismatches(self) -> list[str]:
        """Nodes whose kernel table does not hold exactly the blocks BIRD holds
        (plus the node's own): BIRD's kernel protocol must install what it has."""
        bad = []
        for node in self.lab.nodes:
            if not node.running:
                continue
            held = {n.block for n in self.lab.nodes if n.name in self.held(node)}
            # (the kernel holds no block of a workload-free node: nobody announces it)
            kernel = self.lab.kernel_routes(node) - {node.block}
            if kernel != held:
                bad.append(f"{node.name}: kernel {len(kernel)} blocks, BIRD {len(held)}")
        return bad
