"""The lab's calico-node: turns datastore objects into BIRD configs, reports sessions.

:class:`LabAgent` does for every lab node what calico-node's confd does for its
own node (domain.md 2): read the Calico state, compute the node's peerings and
session kinds (the same session graph the verifier uses), render the node's BIRD
configuration (``calico_rr.core.lab.bird``) and reload BIRD only when the file
changes.  One agent object serves all the lab's nodes (they share the datastore
view), but each node's config depends on that node alone and each BIRD is
reloaded on its own, as each calico-node would.

``calico_rr.adapters.lab.watcher`` feeds the agent from either datastore.

In a dual-stack (or IPv6) lab the IPv4 agent has an IPv6 sibling (:attr:`LabAgent.v6`)
on the lab's IPv6 side (``LabNetwork.v6``: bird6 per node): each takes the
state projected onto its family (``core.bgp.families.project``), so the session
graph and the prediction are the verifier's per family.  The IPv4 agent passes
every state, kill and restart on to it, and its :meth:`LabAgent.status` covers
both families (with a ``families`` section per family).
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
from calico_rr.core.bgp.families import Family, project
from calico_rr.core.bgp.sessions import SessionGraph, build_session_graph
from calico_rr.core.lab.bird import (
    BgpTimers,
    BirdNode,
    bird_nodes,
    protocol_names,
    render_bird_config,
)
from calico_rr.core.lab.prediction import (
    LabComparison,
    compare_routes,
    expected_sessions,
    predicted_routes,
)
from calico_rr.model import CalicoState

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
        workload_free: Collection[str] = (),
        family: Family = "ipv4",
    ) -> None:
        self.lab = lab
        #: the address family this agent's daemons speak (its state is projected on it)
        self.family: Family = family
        #: the IPv6 agent of a dual-stack lab, fed by this one (None: IPv4 only)
        self.v6: LabAgent | None = None
        #: nodes without workloads (dedicated route reflectors): no pod block
        self.workload_free = frozenset(workload_free)
        self.state: CalicoState | None = None
        self.graph: SessionGraph | None = None
        self.reloads = 0
        self.errors: list[str] = []
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
        if self.v6 is not None:
            self.v6.apply(state)
        state = project(state, self.family)
        graph = self._graph(state)
        blocks: dict[str, str | None] = {
            n.name: None if n.name in self.workload_free else n.block for n in self.lab.nodes
        }
        configs = {b.name: b for b in bird_nodes(graph, state, blocks)}
        changed: list[str] = []
        fresh: list[tuple[LabNode, str]] = []  # daemons to start, in one batch
        with self._lock:
            self.state, self.graph = state, graph
            for lab_node in self.lab.nodes:
                bn = configs.get(lab_node.name) or BirdNode(
                    lab_node.name, lab_node.ip, state.default_asn(), None, blocks[lab_node.name], ()
                )
                text = render_bird_config(bn, socket_hint=str(lab_node.sock), timers=BgpTimers())
                protos = zip(protocol_names(bn), bn.peers, strict=True)
                self._peer_of[lab_node.name] = {proto: peer.name for proto, peer in protos}
                if lab_node.name in self.held_down:
                    self._last[lab_node.name] = text  # used when it is restarted
                    continue
                if self._last.get(lab_node.name) == text and lab_node.running:
                    continue
                if lab_node.running:
                    self._reload(lab_node, text)
                else:
                    fresh.append((lab_node, text))
                changed.append(lab_node.name)
            # all at once: started one by one, the first would try peers not
            # listening yet and sit out BIRD's error wait (LabNetwork.start_birds)
            self.lab.start_birds(fresh)
            self._last.update((node.name, text) for node, text in fresh)
        return changed

    def _graph(self, state: CalicoState) -> SessionGraph:
        graph = build_session_graph(state)
        for node in graph.nodes:
            lab_node = self._by_ip.get(node.ip or "")
            if lab_node is None or lab_node.name != node.name:
                where = "fd99::/64" if self.family == "ipv6" else "10.99.0.0/16"
                raise LabError(
                    f"node {node.name} ({node.ip}) is not a lab node: the lab emulates "
                    f"{len(self.lab.nodes)} nodes named {self.lab.name_prefix}NN on {where}"
                )
        return graph

    def set_state(self, state: CalicoState) -> SessionGraph:
        """Take ``state`` as the verifier's view (sessions and routes to expect)
        without rendering anything (another renderer writes the configs)."""
        if self.v6 is not None:
            self.v6.set_state(state)
        state = project(state, self.family)
        graph = self._graph(state)
        with self._lock:
            self.state, self.graph = state, graph
        return graph

    def peer_names(self, node: LabNode) -> dict[str, str]:
        """BIRD protocol name -> peer node name, for the node's sessions."""
        with self._lock:
            return dict(self._peer_of.get(node.name, {}))

    def _reload(self, node: LabNode, text: str) -> None:
        """Give the running BIRD of ``node`` its new config."""
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
        if self.v6 is not None:  # the node's calico-node runs both daemons
            self.v6.kill(self.v6.lab.node(node.name), clean=clean)

    def release(self, names: Collection[str]) -> None:
        """Let the BIRDs (and bird6s) of ``names`` start again when their configs
        are ready (they were held down by :meth:`kill`)."""
        with self._lock:
            self.held_down.difference_update(names)
        if self.v6 is not None:
            self.v6.release(names)

    def restart(self, node: LabNode) -> None:
        """Start a stopped node's BIRD again with its latest config."""
        with self._lock:
            text = self._last.get(node.name)
            if text is None:
                raise LabError(f"no config for {node.name} yet")
            self.held_down.discard(node.name)
            self.lab.start_bird(node, text)
        if self.v6 is not None:
            six = self.v6.lab.node(node.name)
            if six.name in self.v6._last:
                self.v6.restart(six)
            else:  # bird6 never started (no files yet): let it start when they are
                self.v6.held_down.discard(six.name)

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
        the graph without them.  With an IPv6 sibling the counts are both
        families' (summed; reachable and matching only when both are), the
        comparison's IPv6 pairs are tagged ``(ipv6)``, and ``families`` holds each
        family's own numbers."""
        st = self.family_status(down=down)
        if self.v6 is None:
            return st
        six = self.v6.family_status(down=down)
        per = {self.family: st, "ipv6": six}
        out = {
            "nodes": max(st["nodes"], six["nodes"]),
            "sessions_down": [*st["sessions_down"], *(_tag(p) for p in six["sessions_down"])],
            "bird_reachable": st["bird_reachable"] and six["bird_reachable"],
            "matches_verifier": st["matches_verifier"] and six["matches_verifier"],
            "comparison": _merged(st["comparison"], six["comparison"]),
            "families": {
                f: {k: v for k, v in fs.items() if k not in ("comparison", "sessions_down")}
                for f, fs in per.items()
                if fs["nodes"] or f == "ipv6"  # an IPv6-only lab's IPv4 side is empty
            },
        }
        for key in ("sessions_expected", "sessions_established", "missing_pairs"):
            out[key] = st[key] + six[key]
        out["verifier_missing_pairs"] = st["verifier_missing_pairs"] + six["verifier_missing_pairs"]
        return out

    def family_status(self, *, down: frozenset[str] = frozenset()) -> dict[str, Any]:
        """:meth:`status` of this agent's own family."""
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
        if self.v6 is not None:
            bad += [f"{line} (ipv6)" for line in self.v6.kernel_mismatches()]
        return bad


def _tag(pair: tuple[str, ...]) -> tuple[str, ...]:
    """A node pair of the IPv6 side, told apart in a dual-stack report."""
    return tuple(f"{name} (ipv6)" for name in pair)


def _merged(four: LabComparison, six: LabComparison) -> LabComparison:
    """Both families' comparisons as one (IPv6 pairs tagged), for wait loops and
    failure messages; the numbers per family are in ``status()["families"]``."""

    def tagged(pairs: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
        return frozenset((a, f"{b} (ipv6)") for a, b in pairs)

    return LabComparison(
        nodes=max(four.nodes, six.nodes),
        predicted_missing=four.predicted_missing | tagged(six.predicted_missing),
        observed_missing=four.observed_missing | tagged(six.observed_missing),
        only_bird_holds=four.only_bird_holds | tagged(six.only_bird_holds),
        only_verifier_holds=four.only_verifier_holds | tagged(six.only_verifier_holds),
    )
