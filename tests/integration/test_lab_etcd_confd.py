"""Calico's real confd on the etcd datastore (issue 13 items 2-3): confd in
``DATASTORE_TYPE=etcdv3`` mode, against a real etcd with client-certificate TLS,
renders every lab node's BIRD configuration from Calico v3 documents under
``/calico/resources/v3/projectcalico.org/`` (as calicoctl in etcdv3 mode writes
them) and the IPAM keys under ``/calico/ipam/v2/``; real BIRD runs it.

The checks are the Kubernetes confd lab's: confd's peers equal the imitation's
(``core.bird``) for the same state, and BIRD's tables equal the verifier's
prediction, healthy, after a change in etcd, and with a route reflector stopped.
The templates carry the session shim (``confd.shim_fast_sessions``; docs/LAB.md).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from calico_rr.adapters.calico_bin import CalicoBinaries, locate
from calico_rr.adapters.lab.confd import ConfdAgent, ConfdFleet, etcd_ipam
from calico_rr.adapters.lab.etcd_watcher import EtcdWatcher
from calico_rr.adapters.lab.net import LabNetwork
from calico_rr.core.bird import BgpTimers
from calico_rr.core.config import PlanConfig
from calico_rr.core.etcd_layout import encode_document, node_to_calico
from calico_rr.core.planner import plan
from calico_rr.core.synthetic import synthetic_cluster
from calico_rr.model import ANN_IPV4
from calico_rr.testing.etcd import EtcdServer
from calico_rr.testing.lab import ensure_lab_tools

pytestmark = pytest.mark.integration

SIZE = 10
TIMEOUT = 60.0


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


def _plan_docs(lab: LabNetwork) -> list[dict[str, Any]]:
    """A single-cluster layout for the lab's nodes as Calico v3 documents."""
    nodes = [
        dataclasses.replace(
            n, name=ln.name, ip=ln.ip, annotations={**n.annotations, ANN_IPV4: f"{ln.ip}/16"}
        )
        for n, ln in zip(synthetic_cluster(SIZE, zones=2), lab.nodes, strict=True)
    ]
    p = plan(nodes, PlanConfig(topology="single", api_group="projectcalico.org/v3"))
    return [
        *(node_to_calico(n) for n in p.applied_nodes()),
        *p.bgppeers(),
        p.bgp_configuration(),
    ]


def _converged(agent: ConfdAgent, since: float, down: frozenset[str] = frozenset()) -> None:
    st = agent.wait(TIMEOUT, stable=1.0, since=since, down=down)
    assert st["converged"], (st["sessions_down"][:5], st["comparison"].describe())
    assert st["matches_verifier"] and st["bird_reachable"], st["comparison"].describe()
    assert agent.peer_differences() == []


def test_confd_renders_from_etcd(setup: EtcdConfdLab) -> None:
    etcd, lab = setup.etcd, setup.lab
    client = etcd.client()
    docs = _plan_docs(lab)
    for doc in docs:
        client.put(*encode_document(doc))
    for key, value in etcd_ipam(lab, ()):
        client.put(key, value)
    fleet = ConfdFleet(lab, setup.binaries, etcd.env(), fast_sessions=BgpTimers())
    agent = ConfdAgent(lab, fleet)
    watcher = EtcdWatcher(agent, client, calico=setup.binaries.release)
    try:
        t0 = time.monotonic()
        fleet.start()
        watcher.start()
        agent.start()
        assert watcher.synced.wait(30)
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
        assert fleet.dead() == []
    finally:
        agent.close()
        watcher.stop()
        fleet.stop()
        client.close()
