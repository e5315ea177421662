"""The lab agent on Calico's etcd datastore: real etcd (client-certificate TLS),
real BIRD; the configuration written as Calico v3 documents under
/calico/resources/v3/projectcalico.org/, as calicoctl would in etcdv3 mode."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.etcd_watcher import EtcdWatcher
from calico_rr.adapters.lab.net import LabNetwork
from calico_rr.core.formats.etcd import encode_document, resource_key
from calico_rr.sandbox.etcd import EtcdServer
from calico_rr.sandbox.lab_tools import ensure_lab_tools

from .lab_docs import planned_v3_docs

pytestmark = pytest.mark.integration

SIZE = 10


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[EtcdServer, LabNetwork]]:
    ensure_lab_tools()
    with EtcdServer() as etcd, LabNetwork(SIZE) as lab:
        yield etcd, lab


def test_bird_follows_etcd(setup: tuple[EtcdServer, LabNetwork]) -> None:
    etcd, lab = setup
    client = etcd.client()
    docs = planned_v3_docs(lab)
    for doc in docs:
        key, value = encode_document(doc)
        client.put(key, value)
    rr = next(
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Node" and d["spec"]["bgp"].get("routeReflectorClusterID")
    )
    cns = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "CalicoNodeStatus",
        "metadata": {"name": f"status-{rr}"},
        "spec": {"node": rr, "classes": ["BGP"], "updatePeriodSeconds": 10},
    }
    client.put(*encode_document(cns))

    agent = LabAgent(lab)
    watcher = EtcdWatcher(agent, client).start()
    try:
        t0 = time.monotonic()
        assert watcher.synced.wait(30)
        st = agent.wait(90, stable=1.0, since=t0)
        assert st["converged"], st["comparison"].describe()
        assert st["nodes"] == SIZE and st["bird_reachable"] and st["matches_verifier"]
        assert st["sessions_expected"] < SIZE * (SIZE - 1) // 2  # route reflectors, not mesh

        # the RR's session states arrive in etcd, written by compare-and-swap
        deadline = time.monotonic() + 15
        bgp: dict[str, Any] = {}
        while time.monotonic() < deadline:
            kv = client.get(resource_key("caliconodestatuses", f"status-{rr}"))
            assert kv is not None
            bgp = (kv.json().get("status") or {}).get("bgp") or {}
            if bgp.get("numberEstablishedV4") == SIZE - 1:
                break
            time.sleep(0.2)
        assert bgp.get("numberEstablishedV4") == SIZE - 1, bgp  # single: RR peers with all
        assert {p["state"] for p in bgp["peersV4"]} == {"Established"}

        # a change in etcd reaches BIRD: the mesh back on -> every pair peers
        mesh = next(d for d in docs if d["kind"] == "BGPConfiguration")
        mesh = {**mesh, "spec": {**mesh["spec"], "nodeToNodeMeshEnabled": True}}
        client.put(*encode_document(mesh))
        t1 = time.monotonic()
        st = agent.wait(90, stable=1.0, since=t1)
        assert st["converged"] and st["matches_verifier"], st["comparison"].describe()
        assert st["sessions_expected"] > SIZE  # mesh among clients + RR sessions

        # a document calico-node cannot read is skipped with a clear note; BIRD keeps going
        client.put(resource_key("bgppeers", "broken"), b"{not json")
        deadline = time.monotonic() + 10
        while not any("not JSON" in e for e in watcher.errors) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any("bgppeers/broken" in e and "not JSON" in e for e in watcher.errors)
        assert agent.wait(30, stable=1.0)["matches_verifier"]
    finally:
        watcher.stop()
        client.close()
