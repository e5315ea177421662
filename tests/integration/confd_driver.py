"""Driving a confd lab with Calico resources written by hand (issue 13 items 3-4).

The lab's confd processes render what the datastore holds, as on calico-node.
These helpers write a list of Calico documents there (the API server:
:func:`write_docs`; etcd: :func:`write_etcd`; nodes outside the list deleted,
BGPPeers replaced, the BGPConfiguration applied), wait until confd has rendered
them, start the BIRDs of the configuration's nodes, and compare BIRD with the
verifier (:func:`run_config`).  The lab's agent loop is stopped: the test starts
and stops BIRDs itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.errors import AlreadyExists, Conflict
from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.birdctl import BirdError
from calico_rr.adapters.lab.confd import ConfdAgent
from calico_rr.adapters.lab.net import LabNetwork
from calico_rr.adapters.lab.runner import ClusterLab
from calico_rr.core.bgp.calico_version import CalicoVersion
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import SessionGraph, build_session_graph
from calico_rr.core.bgp.twins import twin_pairs
from calico_rr.core.formats.etcd import RESOURCE_ROOT, encode_document
from calico_rr.core.formats.etcd_nodes import node_to_calico
from calico_rr.core.formats.kube import node_from_k8s
from calico_rr.core.lab.prediction import expected_sessions

__all__ = [
    "Rig",
    "node_names",
    "pair_states",
    "rig",
    "run_config",
    "start_config",
    "wait_rendered",
    "write_docs",
    "write_etcd",
]


@dataclass(frozen=True)
class Rig:
    """A confd lab on either datastore: its agent, network, the Calico release
    confd is, and the lab watcher's error list (for failure messages)."""

    agent: ConfdAgent
    net: LabNetwork
    release: CalicoVersion | None
    errors: list[str]


def rig(lab: ClusterLab) -> Rig:
    """The rig of a ``ClusterLab(renderer="confd")`` (Kubernetes datastore)."""
    assert isinstance(lab.agent, ConfdAgent)
    return Rig(lab.agent, lab.lab, lab.release, lab.watcher.errors)


def node_names(docs: list[dict[str, Any]]) -> list[str]:
    return [d["metadata"]["name"] for d in docs if d["kind"] == "Node"]


def write_docs(lab: ClusterLab, docs: list[dict[str, Any]]) -> None:
    """The configuration in the API server, as Calico's CRDs store it; the BIRDs
    of nodes that leave are stopped (running ones are reloaded by confd).  What
    the API server already holds as wanted is not written again: an unchanged
    write is still an event that every confd renders."""
    agent = rig(lab).agent
    admin, group = lab.admin, lab.api_group
    wanted = {d["metadata"]["name"]: d["metadata"] for d in docs if d["kind"] == "Node"}
    for node in lab.lab.nodes:
        if node.name not in wanted and node.running:
            agent.kill(node)
    # the API server's list, not the watcher's view (which may lag a write)
    items, _ = admin.list(api_path("v1", "nodes"))
    present = {obj["metadata"]["name"]: obj for obj in items}
    for name in sorted(set(present) - set(wanted)):
        admin.delete(api_path("v1", "nodes", name))
    for name, meta in wanted.items():
        obj = present.get(name)
        if obj is None:
            doc = {"apiVersion": "v1", "kind": "Node", "metadata": meta}
            try:
                admin.create(api_path("v1", "nodes"), doc)
                continue
            except AlreadyExists:
                # the client retries a POST that timed out under load; the first
                # one had landed (seen in CI): the node is there, update it
                obj = admin.get(api_path("v1", "nodes", name))
                assert obj is not None, name
        _relabel(admin, name, obj, meta)
    _write_peers(admin, group, [d for d in docs if d["kind"] == "BGPPeer"])
    for doc in docs:
        if doc["kind"] == "BGPConfiguration":
            path = api_path(group, "bgpconfigurations", "default")
            admin.apply(path, {**doc, "apiVersion": group}, force=True)


def _write_peers(admin: Any, group: str, peers: list[dict[str, Any]]) -> None:
    """Exactly ``peers`` as the API server's BGPPeers (by name and spec)."""
    want = {p["metadata"]["name"]: p for p in peers}
    held, _ = admin.list(api_path(group, "bgppeers"))
    kept = set()
    for peer in held:
        name = peer["metadata"]["name"]
        if name in want and peer.get("spec") == want[name].get("spec"):
            kept.add(name)
        else:
            admin.delete(api_path(group, "bgppeers", name))
    for name, doc in want.items():
        if name not in kept:
            admin.create(api_path(group, "bgppeers"), {**doc, "apiVersion": group})


def _relabel(admin: Any, name: str, obj: dict[str, Any], meta: dict[str, Any]) -> None:
    """Replace the Node's labels and annotations with ``meta``'s.  A 409 after the
    client retried a PUT that timed out under load (the first one had landed; seen
    in CI) is checked, not taken for a failure: read again, and write only if the
    Node does not hold them yet."""
    want = {"labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}
    if all((obj["metadata"].get(k) or {}) == v for k, v in want.items()):
        return  # held already
    for _ in range(3):
        obj["metadata"].update(want)
        try:
            admin.replace(api_path("v1", "nodes", name), obj)
            return
        except Conflict:
            obj = admin.get(api_path("v1", "nodes", name))
            assert obj is not None, name
            if all((obj["metadata"].get(k) or {}) == v for k, v in want.items()):
                return
    raise AssertionError(f"node {name}: three conflicting writes in a row")


def write_etcd(r: Rig, client: EtcdClient, docs: list[dict[str, Any]]) -> None:
    """The configuration in etcd as Calico v3 documents (a Kubernetes Node's
    BGP annotations become the v3 Node's ``spec.bgp``, as calicoctl in etcdv3
    mode stores them); the BIRDs of nodes that leave are stopped."""
    wanted: dict[str, bytes] = {}
    for doc in docs:
        if doc["kind"] == "Node":
            doc = node_to_calico(node_from_k8s(doc))
        key, value = encode_document({**doc, "apiVersion": "projectcalico.org/v3"})
        wanted[key] = value
    names = set(node_names(docs))
    for node in r.net.nodes:
        if node.name not in names and node.running:
            r.agent.kill(node)
    kinds = ("nodes/", "bgppeers/", "bgpconfigurations/")
    held: dict[str, bytes] = {}
    for kv in client.list(RESOURCE_ROOT).kvs:
        if kv.key[len(RESOURCE_ROOT) :].startswith(kinds):
            held[kv.key] = kv.value
            if kv.key not in wanted:
                client.delete(kv.key)
    for key, value in wanted.items():
        if held.get(key) != value:  # an unchanged put is still an event confd renders
            client.put(key, value)


def wait_rendered(r: Rig, docs: list[dict[str, Any]], timeout: float) -> list[str]:
    """Wait until the lab's view holds ``docs`` and confd has rendered them; the
    differences between confd's peers and the imitation's ([] when equal)."""
    agent = r.agent
    state = parse_resources(docs, calico=r.release).state
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
            for n in map(r.net.node, names)
        ]
        caught_up = graph is not None and sorted(n.name for n in graph.nodes) == names
        caught_up = caught_up and graph is not None and expected_sessions(graph) == want
        if not caught_up and graph is not None:
            diffs = [_behind(r, names, want, graph)]
        key = (caught_up, files)
        if key != last:
            last, quiet_since = key, time.monotonic()
        quiet = time.monotonic() - quiet_since
        if caught_up:
            diffs = agent.peer_differences()
            # equal, and no file changed for 1 s (confd may still be rendering);
            # a difference is only reported at the deadline: on a loaded machine
            # one of 40 confd processes can be seconds late with a node's file
            if not diffs and quiet >= 1.0:
                return diffs
        time.sleep(0.1)
    return diffs


def _behind(r: Rig, names: list[str], want: set[frozenset[str]], graph: SessionGraph) -> str:
    """How the lab's view differs from the configuration written (for a failure)."""
    seen = {n.name for n in graph.nodes}
    have = expected_sessions(graph)
    extra, missing = sorted(seen - set(names))[:3], sorted(set(names) - seen)[:3]
    return (
        f"the lab's view has not caught up: nodes {len(seen)} of {len(names)} "
        f"(extra {extra}, missing {missing}), "
        f"sessions {len(have & want)} of {len(want)} plus {len(have - want)} others; "
        f"watcher errors {r.errors[-3:]}"
    )


def start_config(r: Rig, docs: list[dict[str, Any]]) -> float:
    """Start the BIRDs of the configuration's nodes that are not running (their
    confd files are written); the monotonic time they were started.

    When the configuration has twin protocols on both ends of a pair
    (``core.bgp.twins``: the mesh on and BGPPeers between non-RR nodes), the running
    BIRDs are stopped first and all start cold: reconfigured into twins, BIRD 1.6
    can refuse such a pair's connections for good depending on what ran before
    (doctor warns: twin-protocols), so only a cold start has one outcome to
    compare with the verifier."""
    agent = r.agent
    if twin_pairs(parse_resources(docs, calico=r.release).state).count:
        for name in node_names(docs):
            if r.net.node(name).running:
                agent.kill(r.net.node(name), clean=True)
    agent.release(node_names(docs))  # and their bird6s in a dual-stack lab
    since = time.monotonic()
    agent.start_ready()
    return since


def pair_states(r: Rig, a: str, b: str) -> str:
    """Both ends' BIRD state text for the session between ``a`` and ``b`` (names
    tagged ``(ipv6)``, as a dual-stack status gives them: both ends' bird6)."""
    ends = []
    agent: LabAgent = r.agent
    net, tag = r.net, " (ipv6)"
    if a.endswith(tag) and agent.v6 is not None and net.v6 is not None:
        agent, net, a, b = agent.v6, net.v6, a.removesuffix(tag), b.removesuffix(tag)
    for me, other in ((a, b), (b, a)):
        node = net.node(me)
        try:
            info = agent.sessions(node).get(other, "no protocol")
        except BirdError as exc:
            info = f"birdc failed: {exc}"
        ends.append(f"{me}->{other} {info!r}" + ("" if node.running else " (not running)"))
    return ", ".join(ends)


def _check(r: Rig, tag: str, st: dict[str, Any], failures: list[str]) -> None:
    if not (st["converged"] and st["matches_verifier"]):
        failures.append(f"{tag}: converged={st['converged']} {st['comparison'].describe()}")
        for a, b in st["sessions_down"][:5]:
            failures.append(f"  not Established: {pair_states(r, a, b)}")


def run_config(
    r: Rig,
    seed: int,
    docs: list[dict[str, Any]],
    write: Callable[[list[dict[str, Any]]], None],
    timeout: float,
) -> list[str]:
    """One configuration: ``write(docs)`` puts it in the datastore; then confd
    against the imitation, and BIRD against the verifier healthy and with each
    RR stopped in turn (``timeout`` per state); the failures ([] when none)."""
    write(docs)
    diffs = wait_rendered(r, docs, timeout)
    if diffs:
        return [f"seed {seed}: confd and the imitation render different peers:", *diffs]
    # BIRDs already running were reconfigured by confd's reload, as on calico-node
    since = start_config(r, docs)
    failures: list[str] = []
    _check(r, f"seed {seed} healthy", r.agent.wait(timeout, since=since), failures)
    if failures:
        return failures  # its RR states would only repeat the failure, a timeout each
    state = parse_resources(docs, calico=r.release).state
    rrs = sorted(n.name for n in state.nodes if n.cluster_id is not None and n.ip is not None)
    for rr in rrs:
        r.agent.kill(r.net.node(rr), clean=True)
        st = r.agent.wait(timeout, down=frozenset({rr}))
        _check(r, f"seed {seed} {rr} stopped", st, failures)
        r.agent.restart(r.net.node(rr))
    return failures
