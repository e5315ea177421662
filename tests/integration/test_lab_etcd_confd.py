"""Calico's real confd on the etcd datastore (issue 13 items 2-3): confd in
``DATASTORE_TYPE=etcdv3`` mode, against a real etcd with client-certificate TLS,
renders every lab node's BIRD configuration from Calico v3 documents under
``/calico/resources/v3/projectcalico.org/`` (as calicoctl in etcdv3 mode writes
them) and the IPAM keys under ``/calico/ipam/v2/``; real BIRD runs it.

The checks are the Kubernetes confd lab's: confd's peers equal the imitation's
(``core.lab.bird``) for the same state, and BIRD's tables equal the verifier's
prediction, healthy, after a change in etcd, and with a route reflector stopped;
then the same on random configurations from the extended generator, written as
Calico v3 documents (issue 13 item 4 on etcd); last, the etcd operator's
transitions under the route sampler, with RRs on workload nodes and on dedicated
nodes.  The templates carry the session shim (``confd.shim_fast_sessions``;
docs/LAB.md), except in the dedicated run, which is Calico's own.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import pytest

from calico_rr.adapters.calico_bin import CalicoBinaries, locate
from calico_rr.adapters.demo import wait_steady
from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.demo import (
    cluster_documents,
    felix_report,
    felix_report_key,
    status,
    write_config,
)
from calico_rr.adapters.etcd.operator import EtcdOperator, uninstall
from calico_rr.adapters.lab.confd import ConfdAgent, ConfdFleet, etcd_ipam
from calico_rr.adapters.lab.etcd_watcher import EtcdWatcher
from calico_rr.adapters.lab.net import LabNetwork
from calico_rr.adapters.lab.runner import DEDICATED_LABEL
from calico_rr.adapters.lab.sampler import RouteSampler
from calico_rr.core.formats.etcd import encode_document
from calico_rr.core.formats.etcd_nodes import node_to_calico
from calico_rr.core.lab.bird import BgpTimers
from calico_rr.model import ZONE_LABEL
from calico_rr.sandbox.etcd import EtcdServer
from calico_rr.sandbox.lab_tools import ensure_lab_tools
from calico_rr.testing.random_configs import config_shapes, random_config

from .confd_driver import Rig, run_config, write_etcd
from .lab_docs import lab_nodes, planned_v3_docs

pytestmark = pytest.mark.integration

SIZE = 12
TIMEOUT = 60.0
#: random configurations on etcd (60 run on the Kubernetes datastore)
CONFIGS = 12
STATE_TIMEOUT = 40.0
#: the session shim (docs/LAB.md); None runs Calico's own templates and timers
SHIM = BgpTimers()


@dataclasses.dataclass
class EtcdConfdLab:
    etcd: EtcdServer
    lab: LabNetwork
    binaries: CalicoBinaries


@pytest.fixture(scope="module")
def setup() -> Iterator[EtcdConfdLab]:
    ensure_lab_tools()  # installs BIRD when missing (CI); fails, never skips
    binaries = locate()  # builds Calico's binaries when missing; fails, never skips
    with EtcdServer() as etcd, LabNetwork(SIZE) as lab:
        yield EtcdConfdLab(etcd, lab, binaries)


@contextmanager
def _confd_on_etcd(
    setup: EtcdConfdLab,
    *,
    start_birds: bool,
    workload_free: frozenset[str] = frozenset(),
    shim: BgpTimers | None = SHIM,
) -> Iterator[tuple[Rig, EtcdClient]]:
    """confd on every lab node against etcd (the IPAM keys written: a pod block
    for every node outside ``workload_free``), the lab's view following etcd;
    BIRDs start as confd's files appear, or (``start_birds`` false) only when the
    test starts them.  ``shim`` None: Calico's own templates and timers.
    Everything stopped on the way out."""
    etcd, lab, release = setup.etcd, setup.lab, setup.binaries.release
    for node in lab.nodes:  # what a test before left running
        if node.running:
            lab.stop_bird(node, kill=False)
    client = etcd.client()
    for kv in client.list("/calico/").kvs:  # what a test before left: resources, IPAM, Felix
        client.delete(kv.key)
    for key, value in etcd_ipam(lab, workload_free):
        client.put(key, value)
    fleet = ConfdFleet(lab, setup.binaries, etcd.env(), fast_sessions=shim)
    agent = ConfdAgent(lab, fleet, workload_free=workload_free)
    watcher = EtcdWatcher(agent, client, calico=release)
    try:
        fleet.start()
        if start_birds:
            agent.start()
        else:
            agent.held_down.update(n.name for n in lab.nodes)
        watcher.start()
        assert watcher.synced.wait(30)
        yield Rig(agent, lab, release, watcher.errors), client
        assert fleet.dead() == []
    finally:
        agent.close()
        watcher.stop()
        fleet.stop()
        client.close()


def _converged(agent: ConfdAgent, since: float, down: frozenset[str] = frozenset()) -> None:
    st = agent.wait(TIMEOUT, stable=1.0, since=since, down=down)
    assert st["converged"], (st["sessions_down"][:5], st["comparison"].describe())
    assert st["matches_verifier"] and st["bird_reachable"], st["comparison"].describe()
    assert agent.peer_differences() == []


def test_confd_renders_from_etcd(setup: EtcdConfdLab) -> None:
    lab = setup.lab
    docs = planned_v3_docs(lab)
    with _confd_on_etcd(setup, start_birds=True) as (r, client):
        agent = r.agent
        t0 = time.monotonic()
        for doc in docs:
            client.put(*encode_document(doc))
        _converged(agent, t0)
        st = agent.status()
        assert st["nodes"] == SIZE
        assert st["sessions_expected"] < SIZE * (SIZE - 1) // 2  # route reflectors, not mesh
        rendered = {n.name: agent.rendered_peers(n) for n in lab.nodes}
        assert all(rendered.values()), "confd rendered no BGP protocol on some node"
        rr = next(
            d["metadata"]["name"]
            for d in docs
            if d["kind"] == "Node" and d["spec"]["bgp"].get("routeReflectorClusterID")
        )
        # the RR renders its clients as "rr client" with its cluster ID, read from etcd
        assert any(p["rr_client"] == "yes" for p in rendered[rr].values())

        # a change in etcd reaches confd and BIRD: the mesh back on
        mesh = next(d for d in docs if d["kind"] == "BGPConfiguration")
        client.put(
            *encode_document({**mesh, "spec": {**mesh["spec"], "nodeToNodeMeshEnabled": True}})
        )
        t1 = time.monotonic()
        deadline = t1 + TIMEOUT
        while agent.status()["sessions_expected"] <= SIZE and time.monotonic() < deadline:
            time.sleep(0.1)  # the lab's view follows etcd first
        _converged(agent, t1)
        assert agent.status()["sessions_expected"] > SIZE  # mesh among clients + RR sessions

        # the RR stopped: the mesh still carries every client's routes
        agent.kill(lab.node(rr), clean=True)
        _converged(agent, time.monotonic(), down=frozenset({rr}))
        agent.restart(lab.node(rr))
        _converged(agent, time.monotonic())


def test_random_configs_on_confd_over_etcd(setup: EtcdConfdLab) -> None:
    pool = [(n.name, n.ip) for n in setup.lab.nodes]
    release = setup.binaries.release
    failures: list[str] = []
    shapes: Counter[str] = Counter()
    with _confd_on_etcd(setup, start_birds=False) as (r, client):
        for seed in range(CONFIGS):
            docs = random_config(seed, pool, min_nodes=8, max_nodes=SIZE, extended=True)
            start = time.monotonic()
            failed = run_config(r, seed, docs, partial(write_etcd, r, client), STATE_TIMEOUT)
            failures += failed
            print(f"seed {seed}: {time.monotonic() - start:.1f} s, {len(failed)} failures")
            shapes.update(config_shapes(docs, release))
    assert failures == [], "\n".join(failures)
    # the configurations vary: broken and working ones, eBGP, Manual, RRs
    assert 2 <= shapes["broken"] <= CONFIGS - 2, shapes
    assert min(shapes[k] for k in ("ebgp", "global", "manual", "rrs")) >= 5, shapes


def _cluster_ids(client: EtcdClient) -> dict[str, str]:
    out = {}
    for doc in cluster_documents(client):
        cid = (doc.get("spec") or {}).get("bgp", {}).get("routeReflectorClusterID")
        if doc["kind"] == "Node" and cid:
            out[doc["metadata"]["name"]] = cid
    return out


def _step(
    r: Rig, client: EtcdClient, action: Callable[[], object], down: frozenset[str] = frozenset()
) -> tuple[RouteSampler, frozenset[str]]:
    """``action`` with the route sampler on, until BIRD equals the verifier; the
    sampler and the nodes whose RR cluster ID appeared, went or changed."""
    before = _cluster_ids(client)
    sampler = RouteSampler(r.agent).start()
    t0 = time.monotonic()
    try:
        action()
        _converged(r.agent, t0, down=down)
    finally:
        sampler.stop()
    after = _cluster_ids(client)
    return sampler, frozenset(
        n for n in before.keys() | after.keys() if before.get(n) != after.get(n)
    )


def _no_loss_outside(sampler: RouteSampler, skip: frozenset[str]) -> None:
    """No route lost by any node outside ``skip``, of any origin outside it."""
    report = sampler.report(ignore_nodes=skip, ignore_origins=skip)
    assert report["route_losses"] == 0, report["examples"]
    sweeps = report["sweeps"]
    assert isinstance(sweeps, int) and sweeps >= 5 and report["sampler_errors"] == []


#: the label the etcd test puts on a Calico Node to keep it off RR duty (etcd has
#: no cordon; docs/ETCD.md: ``incompatibleNodeLabels``)
DRAINED = "lab.calico-rr/drained"
#: dedicated RR nodes of the 12 (7 workload nodes; at least one per zone)
DEDICATED = 5


def _label(client: EtcdClient, name: str, key: str, value: str | None) -> None:
    """Set (``value``) or remove (None) one label of the Calico v3 Node ``name``."""
    doc = next(
        d
        for d in cluster_documents(client)
        if d["kind"] == "Node" and d["metadata"]["name"] == name
    )
    labels = dict(doc["metadata"].get("labels") or {})
    if value is None:
        labels.pop(key, None)
    else:
        labels[key] = value
    client.put(*encode_document({**doc, "metadata": {**doc["metadata"], "labels": labels}}))


def _wait_pass(op: EtcdOperator, since: float, timeout: float) -> None:
    """Until a reconcile pass that started after ``since`` has ended Steady."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = op.stats
        if stats.last_start > since and stats.last_end > stats.last_start:
            assert stats.last_phase == "Steady", stats.last_message
            return
        time.sleep(0.05)
    raise TimeoutError(f"no operator pass after the change: {op.stats.last_message}")


@pytest.mark.parametrize("dedicated", [0, DEDICATED], ids=["workload-rrs", "dedicated-rrs"])
def test_operator_on_etcd_with_confd(setup: EtcdConfdLab, dedicated: int) -> None:
    """The etcd operator on real BGP (issue 13 item 3 on etcd, with and without
    dedicated RR nodes), confd in etcdv3 mode rendering every BIRD and the route
    sampler watching: migrate a mesh of Calico v3 Nodes to a single cluster, an
    RR's BIRD crashes and comes back, an RR is drained (etcd's stand-in for
    cordon: a label named in ``incompatibleNodeLabels``) and undrained, a whole
    zone goes down and back (BIRDs killed, Felix reports gone), single -> multi,
    and ``uninstall`` back to the mesh with the operator still running.  After
    each step BIRD equals the verifier.

    * RRs on workload nodes (the session shim, as test_lab_operator.py): no node
      outside those whose RR role changed loses any route; a promoted RR's own
      sessions are down < 3 s; the migration is gated by the session states
      written into CalicoNodeStatus, not by the 60 s wait.
    * ``dedicated`` RR nodes (``dedicatedNodeLabel``; no pod block), on Calico's
      own templates, timers and graceful restart: no workload node loses any
      route of any other workload node, and only dedicated nodes change role."""
    lab = setup.lab
    free = frozenset(n.name for n in lab.nodes[SIZE - dedicated :]) if dedicated else frozenset()
    nodes = [
        dataclasses.replace(n, labels={**n.labels, DEDICATED_LABEL: ""}) if n.name in free else n
        for n in lab_nodes(lab, zones=3)
    ]
    zone_of = {n.name: n.labels[ZONE_LABEL] for n in nodes}
    shim = None if dedicated else SHIM
    mesh = SIZE * (SIZE - 1) // 2
    with _confd_on_etcd(setup, start_birds=True, workload_free=free, shim=shim) as (r, client):
        for node in nodes:  # the mesh: no BGPConfiguration, no BGPPeer; Felix: Ready
            client.put(*encode_document(node_to_calico(node, uid=f"uid-{node.name}")))
            client.put(felix_report_key(node.name), felix_report())
        _converged(r.agent, time.monotonic())
        assert r.agent.status()["sessions_expected"] == mesh

        spec: dict[str, object] = {"topology": "single", "waitTimeout": "60s"}
        spec["incompatibleNodeLabels"] = [DRAINED]
        if dedicated:
            spec["dedicatedNodeLabel"] = DEDICATED_LABEL
        write_config(client, spec)
        op = EtcdOperator(setup.etcd.client(), identity="lab-0", env={})
        changed_all: set[str] = set()

        def step(
            action: Callable[[], object],
            down: frozenset[str] = frozenset(),
            back: frozenset[str] = frozenset(),
        ) -> RouteSampler:
            """``back``: nodes returning from down, whose own blocks may blink as
            their sessions come back (the killed node's exception)."""
            sampler, changed = _step(r, client, action, down=down)
            changed_all.update(changed)
            _no_loss_outside(sampler, (free or changed) | down | back)
            if dedicated:
                assert set(_cluster_ids(client)) <= free
            return sampler

        def operate(change: Callable[[], object], moves: bool = True) -> Callable[[], None]:
            """``change``, then wait for the operator: Steady again after a move,
            or (``moves`` false: nothing to move) a whole pass after the change."""

            def run() -> None:
                since = time.monotonic()
                change()
                if moves:
                    steady = wait_steady(op, lambda: status(client), timeout=120, since=since)
                    seconds.append(steady)
                else:
                    _wait_pass(op, since, timeout=60)

            return run

        seconds: list[float] = []
        try:
            sampler = step(operate(op.start))
            rrs = sorted(_cluster_ids(client))
            assert len(rrs) >= 2 and r.agent.status()["sessions_expected"] < mesh // 2
            assert seconds[0] < 60  # gated by CalicoNodeStatus, not the fallback wait
            assert not [e for e in r.errors if "status report" in e], r.errors
            if not dedicated:
                longest = sampler.report()["loss_seconds_max"]
                assert isinstance(longest, float) and longest < 3.0  # the promoted RRs' own

            # an RR's BIRD crashes (SIGKILL) and comes back: nobody else loses a route
            victim = lab.node(rrs[0])
            step(lambda: r.agent.kill(victim), down=frozenset({victim.name}))
            step(lambda: r.agent.restart(victim), back=frozenset({victim.name}))

            drained = rrs[-1]
            step(operate(lambda: _label(client, drained, DRAINED, "true")))
            assert drained not in _cluster_ids(client)
            step(operate(lambda: _label(client, drained, DRAINED, None), moves=False))

            zone = zone_of[sorted(_cluster_ids(client))[0]]
            lost = frozenset(n for n, z in zone_of.items() if z == zone)

            def zone_down() -> None:
                for name in lost:
                    r.agent.kill(lab.node(name))
                    client.delete(felix_report_key(name))

            step(operate(zone_down), down=lost)
            assert not lost & set(_cluster_ids(client))

            def zone_up() -> None:
                for name in lost:
                    client.put(felix_report_key(name), felix_report())
                    r.agent.restart(lab.node(name))

            step(operate(zone_up, moves=False), back=lost)

            step(operate(lambda: write_config(client, {**spec, "topology": "multi"})))
            assert len(set(_cluster_ids(client).values())) >= 2  # several clusters

            # uninstall with the operator still running: back to the full mesh
            step(lambda: uninstall(client, env={}, timeout=120))
            assert _cluster_ids(client) == {}
            assert r.agent.status()["sessions_expected"] == mesh
            assert changed_all  # roles moved ...
            if dedicated:
                assert changed_all <= free  # ... only on dedicated nodes
        finally:
            op.stop()
