"""The verifier against real BIRD 1.6 daemons in network namespaces (issue 6),
on both renderers (issue 13 item 3).

One lab of 40 emulated nodes per renderer; each case writes its Calico
resources, they become BIRD configs (reloading only the daemons whose config
changed, as calico-node does) and the test waits until BIRD's tables are stable,
then compares them with the verifier node by node.  With the imitation the agent
renders the documents itself and nodes a case does not use run BIRD with no
peers; with Calico's confd the documents go to the API server, nodes a case
does not use are deleted and their BIRD stopped, and confd's peers must equal
the imitation's (``bench`` fixture).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from calico_rr.adapters.calico_bin import locate
from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.net import LabNetwork
from calico_rr.adapters.lab.runner import ClusterLab
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.lab.bird import BgpTimers
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV4
from calico_rr.sandbox.lab_tools import ensure_lab_tools
from calico_rr.testing.random_configs import random_config

from .confd_driver import rig, start_config, wait_rendered, write_docs

pytestmark = pytest.mark.integration

LAB_SIZE = 40
TIMEOUT = 90.0


@dataclass
class Bench:
    """A 40-node lab and how a case's Calico resources reach its BIRDs."""

    renderer: str
    lab: LabNetwork
    agent: LabAgent
    apply: Callable[..., dict[str, Any]]


@pytest.fixture(scope="module", params=["imitation", "confd"])
def bench(request: pytest.FixtureRequest) -> Iterator[Bench]:
    """``imitation``: the agent renders each case (``core.lab.bird``) straight from the
    documents.  ``confd``: the case goes to the API server and Calico's confd
    renders it, with the session shim (docs/LAB.md); its peers must equal the
    imitation's before BIRD starts."""
    ensure_lab_tools()  # installs BIRD when missing (CI); fails, never skips
    if request.param == "imitation":
        with LabNetwork(LAB_SIZE) as net:
            agent = LabAgent(net)

            def apply(docs: list[dict[str, Any]], stable: float = 1.5) -> dict[str, Any]:
                agent.apply(parse_resources(docs, where="test").state)
                return agent.wait(TIMEOUT, stable=stable)

            yield Bench("imitation", net, agent, apply)
        return
    locate()  # builds Calico's binaries when missing; fails, never skips
    shim = BgpTimers()
    with ClusterLab(LAB_SIZE, renderer="confd", timeout=TIMEOUT, confd_fast_sessions=shim) as cl:
        cl.agent.stop()  # the cases start the BIRDs of their nodes

        def apply_confd(docs: list[dict[str, Any]], stable: float = 1.5) -> dict[str, Any]:
            write_docs(cl, docs)
            diffs = wait_rendered(rig(cl), docs, TIMEOUT)
            assert diffs == [], "confd and the imitation differ:\n" + "\n".join(diffs)
            since = start_config(rig(cl), docs)
            return cl.agent.wait(TIMEOUT, stable=stable, since=since)

        yield Bench("confd", cl.lab, cl.agent, apply_confd)


@pytest.fixture
def lab(bench: Bench) -> LabNetwork:
    return bench.lab


@pytest.fixture
def agent(bench: Bench) -> LabAgent:
    return bench.agent


def _plan_docs(lab: LabNetwork, size: int, topology: str, **cfg: Any) -> list[dict[str, Any]]:
    nodes = [
        dataclasses.replace(n, name=ln.name, ip=ln.ip)
        for n, ln in zip(synthetic_cluster(size, zones=3, racks=4), lab.nodes, strict=False)
    ]
    return plan(nodes, PlanConfig(topology=topology, **cfg)).calico_documents()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("topology", "size", "cfg"),
    [
        ("single", 16, {}),
        ("multi", 24, {"redundancy": 2}),
        ("quorum", 32, {"rrs": 6}),
        ("hierarchy", 40, {"racks": 4, "redundancy": 2, "spines": 2}),
        ("auto", 40, {}),
    ],
)
def test_topology_on_bird(
    bench: Bench, agent: LabAgent, lab: LabNetwork, topology: str, size: int, cfg: dict[str, Any]
) -> None:
    st = bench.apply(_plan_docs(lab, size, topology, **cfg))
    assert st["converged"], (st["comparison"].describe(), st["sessions_down"][:5])
    assert st["nodes"] == size
    assert st["sessions_established"] == st["sessions_expected"] > 0
    assert st["bird_reachable"] and st["missing_pairs"] == 0
    assert st["matches_verifier"]
    # BIRD's kernel protocol put every held block into each namespace's routing table
    assert agent.kernel_mismatches() == []


def _node(name: str, ip: str, cluster_id: str | None = None, **labels: str) -> dict[str, Any]:
    annotations = {ANN_IPV4: f"{ip}/16"}
    if cluster_id:
        annotations[ANN_CLUSTER_ID] = cluster_id
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"host": name, **labels}, "annotations": annotations},
    }


def _peer(name: str, node_selector: str, peer_selector: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"nodeSelector": node_selector, "peerSelector": peer_selector},
    }


NO_MESH = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "BGPConfiguration",
    "metadata": {"name": "default"},
    "spec": {"nodeToNodeMeshEnabled": False},
}


def _held(agent: LabAgent, name: str) -> frozenset[str]:
    return agent.held(agent.lab.node(name))


def test_lab_a_on_bird(bench: Bench, agent: LabAgent, lab: LabNetwork) -> None:
    """domain.md lab A: RR1, RR2 share a cluster ID; C3 -> RR1 only, C4 -> RR2 only."""
    rr1, rr2, c3, c4 = lab.nodes[:4]
    docs = [
        _node(rr1.name, rr1.ip, "9.9.9.9", role="rr"),
        _node(rr2.name, rr2.ip, "9.9.9.9", role="rr"),
        _node(c3.name, c3.ip),
        _node(c4.name, c4.ip),
        _peer("rr-mesh", "role == 'rr'", "role == 'rr'"),
        _peer("c3-rr1", f"host == '{c3.name}'", f"host == '{rr1.name}'"),
        _peer("c4-rr2", f"host == '{c4.name}'", f"host == '{rr2.name}'"),
        NO_MESH,
    ]
    st = bench.apply(docs)
    assert st["converged"], st["comparison"].describe()
    assert st["comparison"].observed_missing == {(c3.name, c4.name), (c4.name, c3.name)}
    assert _held(agent, rr1.name) == {rr2.name, c3.name, c4.name}
    assert _held(agent, rr2.name) == {rr1.name, c3.name, c4.name}
    assert c4.name not in _held(agent, c3.name) and c3.name not in _held(agent, c4.name)


def test_lab_b_on_bird(bench: Bench, agent: LabAgent, lab: LabNetwork) -> None:
    """domain.md lab B: spines share ID S, rack RRs X and Y, a client under each."""
    s1, s2, r1, r2, c5, c6 = lab.nodes[:6]
    docs = [
        _node(s1.name, s1.ip, "10.9.9.9", role="spine"),
        _node(s2.name, s2.ip, "10.9.9.9", role="spine"),
        _node(r1.name, r1.ip, "10.0.1.1", role="rack-rr", rack="r1"),
        _node(r2.name, r2.ip, "10.0.2.1", role="rack-rr", rack="r2"),
        _node(c5.name, c5.ip, rack="r1"),
        _node(c6.name, c6.ip, rack="r2"),
        _peer("spines", "role == 'spine'", "role == 'spine'"),
        _peer("racks-to-spines", "role == 'rack-rr'", "role == 'spine'"),
        _peer("r1-clients", "rack == 'r1' && !has(role)", "rack == 'r1' && has(role)"),
        _peer("r2-clients", "rack == 'r2' && !has(role)", "rack == 'r2' && has(role)"),
        NO_MESH,
    ]
    st = bench.apply(docs)
    assert st["converged"], st["comparison"].describe()
    assert st["missing_pairs"] == 0 and st["bird_reachable"]
    assert c6.control is not None
    rows = c6.control.call(f"show route for {c5.block} all")
    text = "\n".join(t for _, t in rows)
    # two paths (add paths: one through each spine), CLUSTER_LIST {S, X, Y}
    assert c6.control.routes()[c5.block] == 2, text
    lists = [t.split(":", 1)[1].split() for _, t in rows if "BGP.cluster_list" in t]
    assert lists and all(sorted(cl) == ["10.0.1.1", "10.0.2.1", "10.9.9.9"] for cl in lists), text


@pytest.mark.parametrize("rr4_id", ["1.1.1.1", "3.3.3.3"])
def test_lab_c_on_bird(bench: Bench, agent: LabAgent, lab: LabNetwork, rr4_id: str) -> None:
    """domain.md lab C: RR1 (X) - RR2 (Y) - RR4 (X or Z), client C3 on RR1."""
    rr1, rr2, rr4, c3 = lab.nodes[:4]
    docs = [
        _node(rr1.name, rr1.ip, "1.1.1.1"),
        _node(rr2.name, rr2.ip, "2.2.2.2"),
        _node(rr4.name, rr4.ip, rr4_id),
        _node(c3.name, c3.ip),
        _peer("rr1-rr2", f"host == '{rr1.name}'", f"host == '{rr2.name}'"),
        _peer("rr2-rr4", f"host == '{rr2.name}'", f"host == '{rr4.name}'"),
        _peer("c3-rr1", f"host == '{c3.name}'", f"host == '{rr1.name}'"),
        NO_MESH,
    ]
    st = bench.apply(docs)
    assert st["converged"], st["comparison"].describe()
    expected = {(rr4.name, c3.name)} if rr4_id == "1.1.1.1" else set()
    assert st["comparison"].observed_missing == expected


@pytest.mark.parametrize("bench", ["imitation"], indirect=True)
def test_random_configs_match_bird(bench: Bench, lab: LabNetwork) -> None:
    """25 random small configurations on the imitation (confd has its own test of
    60 from the extended generator, test_lab_confd_random.py, and 12 more over
    etcd), many broken: BIRD and the verifier agree on exactly which (node,
    origin) pairs are missing."""
    pool = [(n.name, n.ip) for n in lab.nodes[:12]]
    broken = 0
    failures: list[str] = []
    seeds = 25
    for seed in range(seeds):
        docs = random_config(seed, pool)
        st = bench.apply(docs, stable=1.0)
        cmp = st["comparison"]
        if not cmp.matches or not st["converged"]:
            failures.append(f"seed {seed}: {cmp.describe()} (converged={st['converged']})")
        broken += bool(cmp.predicted_missing)
    assert failures == []
    # the generator really produces broken configurations, and working ones
    assert 0.1 * seeds <= broken <= 0.9 * seeds, broken
