"""Driving a confd lab with Calico resources written by hand (issue 13 items 3-4).

The lab's confd processes render what the API server holds, as on calico-node;
these helpers write a list of Calico documents there (nodes outside it deleted,
BGPPeers replaced, the BGPConfiguration applied), wait until confd has rendered
them, and start the BIRDs of the configuration's nodes.  Used with a
``ClusterLab(renderer="confd")`` whose agent loop is stopped (the test starts
and stops BIRDs itself).
"""

from __future__ import annotations

import time
from typing import Any

from calico_rr.adapters.kube.client import api_path
from calico_rr.adapters.lab.birdctl import BirdError
from calico_rr.adapters.lab.confd import ConfdAgent
from calico_rr.adapters.lab.runner import ClusterLab
from calico_rr.core.labcheck import expected_sessions
from calico_rr.core.resources import parse_resources
from calico_rr.core.sessions import SessionGraph, build_session_graph
from calico_rr.core.twins import twin_pairs

__all__ = [
    "confd_agent",
    "node_names",
    "pair_states",
    "start_config",
    "wait_rendered",
    "write_docs",
]


def confd_agent(lab: ClusterLab) -> ConfdAgent:
    assert isinstance(lab.agent, ConfdAgent)
    return lab.agent


def node_names(docs: list[dict[str, Any]]) -> list[str]:
    return [d["metadata"]["name"] for d in docs if d["kind"] == "Node"]


def write_docs(lab: ClusterLab, docs: list[dict[str, Any]]) -> None:
    """The configuration in the API server, as Calico's CRDs store it; the BIRDs
    of nodes that leave are stopped (running ones are reloaded by confd)."""
    agent = confd_agent(lab)
    admin, group = lab.admin, lab.api_group
    wanted = {d["metadata"]["name"]: d["metadata"] for d in docs if d["kind"] == "Node"}
    for node in lab.lab.nodes:
        if node.name not in wanted and node.running:
            agent.kill(node)
    for name in lab.members:
        if name not in wanted:
            admin.delete(api_path("v1", "nodes", name))
    for name, meta in wanted.items():
        obj = admin.get(api_path("v1", "nodes", name))
        if obj is None:
            doc = {"apiVersion": "v1", "kind": "Node", "metadata": meta}
            admin.create(api_path("v1", "nodes"), doc)
        else:
            obj["metadata"]["labels"] = meta.get("labels") or {}
            obj["metadata"]["annotations"] = meta.get("annotations") or {}
            admin.replace(api_path("v1", "nodes", name), obj)
    peers, _ = admin.list(api_path(group, "bgppeers"))
    for peer in peers:
        admin.delete(api_path(group, "bgppeers", peer["metadata"]["name"]))
    for doc in docs:
        if doc["kind"] == "BGPPeer":
            admin.create(api_path(group, "bgppeers"), {**doc, "apiVersion": group})
        elif doc["kind"] == "BGPConfiguration":
            path = api_path(group, "bgpconfigurations", "default")
            admin.apply(path, {**doc, "apiVersion": group}, force=True)


def wait_rendered(lab: ClusterLab, docs: list[dict[str, Any]], timeout: float) -> list[str]:
    """Wait until the lab's view holds ``docs`` and confd has rendered them; the
    differences between confd's peers and the imitation's ([] when equal)."""
    agent = confd_agent(lab)
    state = parse_resources(docs, calico=lab.release).state
    want = expected_sessions(build_session_graph(state))
    names = sorted(node_names(docs))
    deadline = time.monotonic() + timeout
    last: object = None
    quiet_since = time.monotonic()
    diffs = ["the lab's view has not caught up: no state"]
    while time.monotonic() < deadline:
        graph = agent.graph
        files = [
            tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in agent.fleet.files(n))
            for n in map(lab.lab.node, names)
        ]
        caught_up = graph is not None and sorted(n.name for n in graph.nodes) == names
        caught_up = caught_up and graph is not None and expected_sessions(graph) == want
        if not caught_up and graph is not None:
            diffs = [_behind(lab, names, want, graph)]
        key = (caught_up, files)
        if key != last:
            last, quiet_since = key, time.monotonic()
        quiet = time.monotonic() - quiet_since
        if caught_up:
            diffs = agent.peer_differences()
            # confd may still be rendering: equal and quiet for 1 s, or 6 s of quiet
            if (not diffs and quiet >= 1.0) or quiet >= 6.0:
                return diffs
        time.sleep(0.1)
    return diffs


def _behind(
    lab: ClusterLab, names: list[str], want: set[frozenset[str]], graph: SessionGraph
) -> str:
    """How the lab's view differs from the configuration written (for a failure)."""
    seen = {n.name for n in graph.nodes}
    have = expected_sessions(graph)
    extra, missing = sorted(seen - set(names))[:3], sorted(set(names) - seen)[:3]
    return (
        f"the lab's view has not caught up: nodes {len(seen)} of {len(names)} "
        f"(extra {extra}, missing {missing}), "
        f"sessions {len(have & want)} of {len(want)} plus {len(have - want)} others; "
        f"watcher errors {lab.watcher.errors[-3:]}"
    )


def start_config(lab: ClusterLab, docs: list[dict[str, Any]]) -> float:
    """Start the BIRDs of the configuration's nodes that are not running (their
    confd files are written); the monotonic time they were started.

    When the configuration has twin protocols on both ends of a pair
    (``core.twins``: the mesh on and BGPPeers between non-RR nodes), the running
    BIRDs are stopped first and all start cold: reconfigured into twins, BIRD 1.6
    can refuse such a pair's connections for good depending on what ran before
    (doctor warns: twin-protocols), so only a cold start has one outcome to
    compare with the verifier."""
    agent = confd_agent(lab)
    if twin_pairs(parse_resources(docs, calico=lab.release).state).count:
        for name in node_names(docs):
            if lab.lab.node(name).running:
                agent.kill(lab.lab.node(name), clean=True)
    agent.held_down.difference_update(node_names(docs))
    since = time.monotonic()
    agent.start_ready()
    return since


def pair_states(lab: ClusterLab, a: str, b: str) -> str:
    """Both ends' BIRD state text for the session between ``a`` and ``b``."""
    agent = confd_agent(lab)
    ends = []
    for me, other in ((a, b), (b, a)):
        node = lab.lab.node(me)
        try:
            info = agent.sessions(node).get(other, "no protocol")
        except BirdError as exc:
            info = f"birdc failed: {exc}"
        ends.append(f"{me}->{other} {info!r}" + ("" if node.running else " (not running)"))
    return ", ".join(ends)
