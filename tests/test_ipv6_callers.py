"""Issue 17's remaining callers of the session graph, per address family: twin
protocols, the doctor's session checks, the demo's verification, and
``--ip-family`` refused with a live cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from calico_rr.adapters.demo import VERIFICATION_KEYS, verification
from calico_rr.cli import app
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.twins import twin_pairs
from calico_rr.core.bgp.verify.families import verify_families
from calico_rr.core.doctor.checks import diagnose
from calico_rr.core.doctor.findings import Finding, Severity
from calico_rr.core.doctor.inventory import inventory_from_documents
from calico_rr.core.formats.kube import node_to_k8s
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import plan_state
from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV4, ANN_IPV6, ZONE_LABEL

runner = CliRunner()


def node(i: int, *, v6: bool = True, rr: bool = False, zone: str = "a") -> dict[str, Any]:
    ann = {ANN_IPV4: f"10.0.0.{i + 1}/24"}
    if v6:
        ann[ANN_IPV6] = f"fd00::{i + 1:x}/64"
    labels = {ZONE_LABEL: zone}
    if rr:
        ann[ANN_CLUSTER_ID] = "244.0.0.1"
        labels["rr"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": f"n{i:02d}", "annotations": ann, "labels": labels},
    }


def peer(name: str, node_sel: str, peer_sel: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"nodeSelector": node_sel, "peerSelector": peer_sel},
    }


def mesh(on: bool) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": on},
    }


def doctor(docs: list[dict[str, Any]]) -> list[Finding]:
    return diagnose(inventory_from_documents([{"apiVersion": "v1", "kind": "List", "items": docs}]))


# -- twins -------------------------------------------------------------------------


def test_twins_are_counted_in_each_family() -> None:
    docs = [node(i) for i in range(4)] + [peer("all", "all()", "all()"), mesh(True)]
    twins = twin_pairs(parse_resources(docs).state)
    assert twins.by_family == {"ipv4": 6, "ipv6": 6}  # C(4, 2) in BIRD and in bird6
    assert twins.count == 12 and twins.examples[0] == ("n00", "n01")
    found = [f for f in doctor(docs) if f.id == "twin-protocols"]
    assert len(found) == 1 and "IPv4 6, IPv6 6" in found[0].message
    # a node without an IPv6 address has no bird6 protocols: only IPv4 twins with it
    docs = [node(0), node(1), node(2, v6=False), peer("all", "all()", "all()"), mesh(True)]
    assert twin_pairs(parse_resources(docs).state).by_family == {"ipv4": 3, "ipv6": 1}


def test_ipv4_only_twins_read_as_before() -> None:
    docs = [node(i, v6=False) for i in range(4)] + [peer("all", "all()", "all()"), mesh(True)]
    twins = twin_pairs(parse_resources(docs).state)
    assert twins.count == 6 and twins.by_family == {"ipv4": 6}
    found = [f for f in doctor(docs) if f.id == "twin-protocols"]
    assert "IPv6" not in found[0].message


# -- doctor's session checks per family --------------------------------------------------


def rr_cluster(*, rr_v6: bool) -> list[dict[str, Any]]:
    """Mesh off; two RRs (IPv6 addresses or not) and four clients with both."""
    nodes = [node(i, rr=True, v6=rr_v6) for i in range(2)] + [node(i) for i in range(2, 6)]
    return [
        *nodes,
        peer("to-rrs", "all()", "rr == 'true'"),
        mesh(False),
    ]


def test_clients_without_an_ipv6_rr_are_found() -> None:
    found = doctor(rr_cluster(rr_v6=False))
    lost = [f for f in found if f.id == "client-without-rr"]
    # IPv4: every client has its RRs; IPv6: the RRs have no IPv6 address, so bird6
    # on each client has no session at all
    assert len(lost) == 1
    assert lost[0].severity == Severity.ERROR
    assert lost[0].message.startswith("IPv6 sessions: ")
    assert "4 of 4 non-RR nodes" in lost[0].message
    assert any(f.id == "dual-stack-gap" for f in found)


def test_findings_alike_in_both_families_are_shown_once() -> None:
    found = doctor(rr_cluster(rr_v6=True))
    assert not [f for f in found if f.id == "client-without-rr"]
    # every RR in zone a while the nodes span a and b: the same in both families
    docs = rr_cluster(rr_v6=True)
    docs[5] = node(5, zone="b")
    single = [f for f in doctor(docs) if f.id == "rr-single-zone"]
    assert len(single) == 1 and not single[0].message.startswith(("IPv4", "IPv6"))


# -- the demo's verification -------------------------------------------------------------


def test_demo_verification_names_every_family() -> None:
    nodes = synthetic_cluster(30, zones=3, ip_family="dual", ipv4_only=0.1)
    state = plan_state(plan(nodes, _config()))
    data = verification(verify_families(state))
    assert tuple(data) == VERIFICATION_KEYS
    assert set(data["families"]) == {"ipv4", "ipv6"}
    assert data["families"]["ipv4"]["nodes_without_address"] == 0
    assert data["families"]["ipv6"]["nodes_without_address"] == 3
    # the IPv4-only nodes hold no IPv6 route: the layout does not verify as a whole
    assert data["families"]["ipv4"]["reachable"] is True
    assert data["families"]["ipv6"]["reachable"] is False and data["reachable"] is False
    full = verification(
        verify_families(
            plan_state(plan(synthetic_cluster(30, zones=3, ip_family="dual"), _config()))
        )
    )
    assert full["reachable"] and full["single_rr_failure_tolerant"]
    assert full["sessions"] == sum(f["sessions"] for f in full["families"].values())


def _config() -> Any:
    from calico_rr.core.planning.config import PlanConfig

    return PlanConfig(topology="multi")


def test_demo_refuses_a_bad_family_before_starting_anything() -> None:
    result = runner.invoke(app, ["demo", "--nodes", "5", "--ip-family", "ipv5", "--no-report"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "--ip-family must be ipv4, ipv6 or dual, got 'ipv5'"


# -- --ip-family with a live cluster ----------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "render", "verify", "diff"])
def test_ip_family_with_a_live_cluster_is_refused(command: str, tmp_path: Path) -> None:
    # the kubeconfig does not exist: the flag is refused before it would be read
    kubeconfig = str(tmp_path / "missing-kubeconfig")
    result = runner.invoke(app, [command, "--kubeconfig", kubeconfig, "--ip-family", "dual"])
    assert result.exit_code == 2, result.output
    assert "--ip-family applies to a synthetic cluster" in result.stderr
    assert "a live cluster's addresses say which families it uses" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "missing-kubeconfig").exists()


def test_ip_family_ipv4_with_a_live_cluster_is_not_the_error(tmp_path: Path) -> None:
    """The default stays accepted: the failure is then the missing kubeconfig."""
    kubeconfig = str(tmp_path / "missing-kubeconfig")
    result = runner.invoke(app, ["plan", "--kubeconfig", kubeconfig])
    assert result.exit_code != 0 and "--ip-family" not in result.stderr


def test_node_to_k8s_roundtrip_used_by_the_live_test() -> None:
    """The integration test creates Nodes from synthetic ones: both annotations."""
    n = synthetic_cluster(2, ip_family="dual", ipv4_only=0.5)
    objs = [node_to_k8s(x) for x in n]
    anns = [o["metadata"]["annotations"] for o in objs]
    assert sum(ANN_IPV6 in a for a in anns) == 1 and all(ANN_IPV4 in a for a in anns)
