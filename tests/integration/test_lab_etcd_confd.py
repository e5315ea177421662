"""Calico's real confd on the etcd datastore (issue 13 items 2-3): confd in
``DATASTORE_TYPE=etcdv3`` mode, against a real etcd with client-certificate TLS,
renders every lab node's BIRD configuration from Calico v3 documents under
``/calico/resources/v3/projectcalico.org/`` (as calicoctl in etcdv3 mode writes
them) and the IPAM keys under ``/calico/ipam/v2/``; real BIRD runs it.

The checks are the Kubernetes confd lab's: confd's peers equal the imitation's
(``core.bird``) for the same state, and BIRD's tables equal the verifier's
prediction, healthy, after a change in etcd, and with a route reflector stopped;
then the same on random configurations from the extended generator, written as
Calico v3 documents (issue 13 item 4 on etcd).  The templates carry the session
shim (``confd.shim_fast_sessions``; docs/LAB.md).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import pytest

from calico_rr.adapters.calico_bin import CalicoBinaries, locate
from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.lab.confd import ConfdAgent, ConfdFleet, etcd_ipam
from calico_rr.adapters.lab.etcd_watcher import EtcdWatcher
from calico_rr.adapters.lab.net import LabNetwork
from calico_rr.core.bird import BgpTimers
from calico_rr.core.etcd_layout import encode_document
from calico_rr.testing.etcd import EtcdServer
from calico_rr.testing.lab import ensure_lab_tools
from calico_rr.testing.random_configs import config_shapes, random_config

from .confd_driver import Rig, run_config, write_etcd
from .lab_docs import planned_v3_docs

pytestmark = pytest.mark.integration

SIZE = 12
TIMEOUT = 60.0
#: random configurations on etcd (60 run on the Kubernetes datastore)
CONFIGS = 12
STATE_TIMEOUT = 40.0


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
def _confd_on_etcd(setup: EtcdConfdLab, *, start_birds: bool) -> Iterator[tuple[Rig, EtcdClient]]:
    """confd on every lab node against etcd (the IPAM keys written), the lab's view
    following etcd; BIRDs start as confd's files appear, or (``start_birds``
    false) only when the test starts them.  Everything stopped on the way out."""
    etcd, lab, release = setup.etcd, setup.lab, setup.binaries.release
    for node in lab.nodes:  # what a test before left running
        if node.running:
            lab.stop_bird(node, kill=False)
    client = etcd.client()
    for key, value in etcd_ipam(lab, ()):
        client.put(key, value)
    fleet = ConfdFleet(lab, setup.binaries, etcd.env(), fast_sessions=BgpTimers())
    agent = ConfdAgent(lab, fleet)
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
