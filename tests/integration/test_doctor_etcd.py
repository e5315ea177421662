"""`calico-rr doctor` on Calico's etcd datastore (a real etcd with client-cert TLS).

The acceptance cluster of the doctor issue written as Calico v3 documents into etcd —
300 nodes on the full mesh, an IPPool with IPIP Always — is diagnosed through the CLI
with Calico's environment variables; then the same keyspace, moved to route
reflectors by the etcd operator, has no error left.  Typha does not exist on etcd
clusters, so its checks must stay silent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.inventory import etcd_documents, load_etcd
from calico_rr.core.doctor.checks import diagnose
from calico_rr.core.formats import etcd as L
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.errors import InputError
from calico_rr.sandbox.etcd import EtcdServer

from .test_etcd_operator import Cluster

pytestmark = pytest.mark.integration

NODES = 300


def ippool(name: str, **spec: Any) -> tuple[str, bytes]:
    doc = {
        "apiVersion": L.API_VERSION,
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": "10.244.0.0/16", **spec},
    }
    return f"{L.RESOURCE_ROOT}ippools/{name}", json.dumps(doc).encode()


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture
def admin(etcd: EtcdServer) -> Iterator[EtcdClient]:
    client = etcd.client(timeout=10.0)
    for kv in client.list("/calico").kvs:
        client.delete(kv.key)
    try:
        yield client
    finally:
        client.close()


def doctor_cli(etcd: EtcdServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
    env.update(etcd.env())  # DATASTORE_TYPE=etcdv3, ETCD_ENDPOINTS, TLS files
    return subprocess.run(
        [sys.executable, "-m", "calico_rr.cli", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_mesh_cluster_with_ipip_always(etcd: EtcdServer, admin: EtcdClient) -> None:
    c = Cluster(etcd, admin)
    c.add(synthetic_cluster(NODES, zones=3))
    admin.put(*ippool("default-ipv4-ippool", ipipMode="Always", natOutgoing=True))
    proc = doctor_cli(etcd, "--json")
    assert proc.returncode == 1, proc.stderr  # errors found
    findings = json.loads(proc.stdout)["findings"]
    ids = {f["id"] for f in findings}
    assert {"mesh-at-scale", "encap-always", "nat-outgoing"} <= ids, findings
    assert not any(i.startswith("typha") for i in ids), findings  # no Typha on etcd
    mesh = next(f for f in findings if f["id"] == "mesh-at-scale")
    assert mesh["severity"] == "error" and str(NODES) in mesh["message"]
    pool = next(f for f in findings if f["id"] == "encap-always")
    assert "default-ipv4-ippool" in pool["object"]


def test_operator_managed_cluster_has_no_error(etcd: EtcdServer, admin: EtcdClient) -> None:
    c = Cluster(etcd, admin)
    c.add(synthetic_cluster(120, zones=3))
    admin.put(*ippool("default-ipv4-ippool", ipipMode="CrossSubnet"))
    c.config({"waitTimeout": "1s", "debounce": "20ms"})
    op = c.operator()
    try:
        c.steady(op, timeout=90.0)
    finally:
        op.stop(release=False)
        op.client.close()
    findings = diagnose(load_etcd(admin))
    assert not [f for f in findings if f.severity == "error"], findings
    proc = doctor_cli(etcd)  # the table, exit code 0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert "checked 120 nodes" in out and "etcd datastore" in out, out


def test_bad_document_and_empty_datastore_are_clear_errors(
    etcd: EtcdServer, admin: EtcdClient
) -> None:
    with pytest.raises(InputError, match="no Node objects"):
        load_etcd(admin)
    proc = doctor_cli(etcd)
    assert proc.returncode == 2 and "no Node objects" in proc.stderr, proc.stderr
    admin.put(f"{L.RESOURCE_ROOT}bgppeers/broken", b"{not json")
    with pytest.raises(InputError, match="bgppeers/broken"):
        etcd_documents(admin)
    both = doctor_cli(etcd, "--kubeconfig", "/nonexistent")
    assert both.returncode == 2 and "not both" in both.stderr, both.stderr


def test_doctor_reads_as_the_release_the_datastore_records(
    etcd: EtcdServer, admin: EtcdClient
) -> None:
    """calico-node records its release in ClusterInformation default, in etcd as on
    Kubernetes: the etcd inventory reads the datastore as that release."""
    from calico_rr.adapters.etcd.inventory import CLUSTER_INFORMATION_KEY

    Cluster(etcd, admin).add(synthetic_cluster(10))
    assert not any("ClusterInformation" in n for n in load_etcd(admin).notes)
    info = {
        "apiVersion": L.API_VERSION,
        "kind": "ClusterInformation",
        "metadata": {"name": "default"},
        "spec": {"calicoVersion": "v3.28.1", "clusterType": "bgp"},
    }
    admin.put(CLUSTER_INFORMATION_KEY, json.dumps(info).encode())
    notes = load_etcd(admin).notes
    assert "read as Calico v3.28.1, the release ClusterInformation default records" in notes
    proc = doctor_cli(etcd)  # the table ends with the notes
    assert "note: read as Calico v3.28.1" in proc.stdout, proc.stdout + proc.stderr
    admin.put(CLUSTER_INFORMATION_KEY, b"{not json")
    with pytest.raises(InputError, match="clusterinformations/default"):
        load_etcd(admin)
