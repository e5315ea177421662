"""``calico-rr demo --datastore etcdv3`` against a real etcd with TLS (and the
Kubernetes demo that ``make demo`` runs, on a real kube-apiserver).

The etcd demo prints the same JSON keys as the Kubernetes demo (both CLI runs are
compared, and both match ``demo.DEMO_KEYS``), and what it prints is true:
converged, verified, the joined node labelled with one write, the zone failure
re-converged with the survivors reaching each other, no re-list after the sync.
The request counting it relies on (etcd's own gRPC counters minus the driver's
requests) is checked exactly against a client's known requests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calico_rr.adapters.demo import DEMO_KEYS, VERIFICATION_KEYS, ZONE_FAILURE_KEYS
from calico_rr.adapters.etcd.demo import (
    EtcdRequestCounter,
    RequestLedger,
    SentRequests,
    reads_not_leader,
    writes,
)
from calico_rr.sandbox.etcd import EtcdServer

pytestmark = pytest.mark.integration

NODES = 60


def demo(*args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
    proc = subprocess.run(
        [sys.executable, "-m", "calico_rr.cli", "demo", "--nodes", str(NODES), "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def keys(result: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    return set(result), set(result["verification"]), set(result["zone_failure"])


@pytest.fixture(scope="module")
def etcd_result() -> dict[str, Any]:
    return demo("--datastore", "etcdv3", "--topology", "multi", "--no-report")


@pytest.fixture(scope="module")
def kube_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo") / "report.html"


@pytest.fixture(scope="module")
def kube_result(kube_report: Path) -> dict[str, Any]:
    # the default datastore: kubernetes (`make demo`)
    return demo("--topology", "multi", "--report", str(kube_report))


def test_same_keys_as_the_kubernetes_demo(
    etcd_result: dict[str, Any], kube_result: dict[str, Any]
) -> None:
    kube = kube_result
    assert keys(etcd_result) == keys(kube)
    assert keys(etcd_result) == (set(DEMO_KEYS), set(VERIFICATION_KEYS), set(ZONE_FAILURE_KEYS))
    assert list(etcd_result) == list(kube)  # the same order too


def test_the_etcd_demo_converges_and_verifies(etcd_result: dict[str, Any]) -> None:
    r = etcd_result
    assert r["nodes"] == NODES and r["zones"] == 3
    assert r["converged"] is True and r["verified"] is True
    assert r["verification"]["reachable"] is True
    assert r["verification"]["single_rr_failure_tolerant"] is True
    assert r["verification"]["sessions"] > 0
    assert r["topology"] == "multi"
    assert r["route_reflectors"] >= 3 and r["bgppeer_objects"] >= 1
    assert r["seconds_to_converge"] > 0


def test_the_joined_node_is_labelled_with_one_write(etcd_result: dict[str, Any]) -> None:
    r = etcd_result
    joined = f"node-{NODES:05d}"
    assert r["join_writes"] == [f"put nodes {joined}"], r["join_writes"]
    assert r["api_writes_per_node_join"] == 1
    assert r["seconds_to_converge_after_join"] > 0


def test_a_zone_failure_reconverges(etcd_result: dict[str, Any]) -> None:
    z = etcd_result["zone_failure"]
    assert z["zone"] == "zone-a"
    assert z["failed_nodes"] == (NODES + 1 + 2) // 3  # nodes round-robin over 3 zones
    assert z["surviving_nodes_reach_each_other"] is True
    assert z["seconds_to_reconverge"] > 0


def test_no_list_after_the_sync(etcd_result: dict[str, Any]) -> None:
    assert etcd_result["api_lists_after_sync"] == 0
    assert etcd_result["operator_lists_after_sync"] == 0
    # the initial sync alone is 6 LISTs and 6 WATCHes; then leader renewals and writes
    assert etcd_result["api_requests_total"] > NODES


def test_the_kubernetes_demo_tells_the_truth(kube_result: dict[str, Any]) -> None:
    """`make demo`'s own claims, on the real kube-apiserver it starts."""
    r = kube_result
    assert r["nodes"] == NODES and r["converged"] is True and r["verified"] is True
    assert r["verification"]["reachable"] and r["verification"]["single_rr_failure_tolerant"]
    assert r["topology"] == "multi" and r["route_reflectors"] >= 3
    # the join is one server-side apply of the new node's labels (Lease renewals excluded)
    assert r["join_writes"] == [f"patch nodes node-{NODES:05d}"], r["join_writes"]
    assert r["api_writes_per_node_join"] == 1
    assert r["api_lists_after_sync"] == 0 and r["operator_lists_after_sync"] == 0
    z = r["zone_failure"]
    assert z["failed_nodes"] == (NODES + 1 + 2) // 3
    assert z["surviving_nodes_reach_each_other"] is True


def test_the_kubernetes_demo_writes_its_report(
    kube_result: dict[str, Any], kube_report: Path
) -> None:
    assert kube_result["report"] == str(kube_report)
    page = kube_report.read_text()
    assert page.startswith("<!DOCTYPE html>")
    for section in ("result", "topology", "timeline", "join", "zone-failure"):
        assert f'<section id="{section}">' in page
    assert 'class="verdict ok"' in page
    assert 'src="data:image/png;base64,' in page  # the drawing (the dev env has matplotlib)
    timeline = page[page.index('id="timeline-table"') :]
    timeline = timeline[: timeline.index("</table>")]
    # the operator went through the mesh-off migration and ended Steady
    assert "MeshOff" in timeline or "Confirming" in timeline
    assert "<td>Steady</td>" in timeline
    assert f"patch nodes node-{NODES:05d}" in page


def test_the_etcd_demo_without_a_report(etcd_result: dict[str, Any]) -> None:
    assert etcd_result["report"] is None


def test_unknown_datastore_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "calico_rr.cli", "demo", "--datastore", "consul"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "must be 'kubernetes' or 'etcdv3'" in proc.stderr


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


def test_the_request_ledger_counts_exactly_what_others_sent(etcd: EtcdServer) -> None:
    """etcd's counters minus the driver's own requests = the other client's requests."""
    sent = SentRequests()
    driver = etcd.client(on_request=sent)
    other = etcd.client()
    ledger = RequestLedger(EtcdRequestCounter.for_server(etcd), sent)
    try:
        mark = ledger.mark()
        driver.put("/calico/a", b"1")  # the driver's requests are subtracted
        driver.list("/calico/")
        kv = other.put_if("/calico/b", b"1", 0)
        other.put_if("/calico/b", b"2", kv.mod_revision)
        other.delete_if("/calico/b", kv.mod_revision + 1)
        other.put("/calico/c", b"1")
        other.get("/calico/a")
        other.list("/calico/", page_size=1)  # 2 keys, 1 per page: 2 Range requests
        lease = other.grant(30)
        other.keepalive(lease.id)
        other.watch("/calico/", 1).close()
        counted = ledger.since(mark)
        assert counted == {
            "Txn": 3,
            "Put": 1,
            "Range": 3,
            "LeaseGrant": 1,
            "LeaseKeepAlive": 1,
            "Watch": 1,
        }, counted
        assert writes(counted) == 4
        assert reads_not_leader(counted) == 2  # Range minus one per keepalive
        assert sent.snapshot() == {"Put": 1, "Range": 1}
    finally:
        driver.close()
        other.close()
