"""Tests for calico_rr.core.planning.synthetic: deterministic generated clusters."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_rr.core.formats.kube import node_from_k8s, node_to_k8s
from calico_rr.core.limits import MAX_NODES
from calico_rr.core.planning.synthetic import ADDRESSES, synthetic_cluster, synthetic_ip, zone_name
from calico_rr.errors import ConfigError
from calico_rr.model import ANN_IPV4, ZONE_LABEL, Node

RACK = "calico-rr.io/rack"
START = 1704067200.0


def _healthy(node: Node) -> bool:
    """The domain.md section 6 health rules, restated independently of core.planning.candidates."""
    return (
        node.ready
        and not node.unschedulable
        and not node.deleting
        and not node.taints
        and all(node.conditions.get(c) != "True" for c in ("DiskPressure", "MemoryPressure"))
    )


def test_empty_cluster() -> None:
    assert synthetic_cluster(0) == []
    assert synthetic_cluster(0, zones=3, racks=4, unhealthy=0.5) == []


def test_basic_fields() -> None:
    nodes = synthetic_cluster(3)
    assert [n.name for n in nodes] == ["node-00000", "node-00001", "node-00002"]
    assert [n.ip for n in nodes] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert [n.created for n in nodes] == [START, START + 60, START + 120]
    for n in nodes:
        assert n.labels == {}
        assert n.ready and _healthy(n)
        assert n.raw is None


def test_deterministic() -> None:
    args = {"zones": 3, "racks": 7, "unhealthy": 0.2}
    assert synthetic_cluster(1000, **args) == synthetic_cluster(1000, **args)  # type: ignore[arg-type]


def test_start_shifts_creation_times() -> None:
    nodes = synthetic_cluster(3, start=100.0)
    assert [n.created for n in nodes] == [100.0, 160.0, 220.0]


@pytest.mark.parametrize(
    ("count", "last"), [(1, "node-00000"), (MAX_NODES, f"node-{MAX_NODES - 1}")]
)
def test_name_width(count: int, last: str) -> None:
    nodes = synthetic_cluster(count)
    assert nodes[-1].name == last
    assert len({len(n.name) for n in nodes}) == 1  # all padded to the same width


def test_names_sort_in_index_order() -> None:
    nodes = synthetic_cluster(MAX_NODES)
    names = [n.name for n in nodes]
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    created = [n.created for n in nodes]
    assert created == sorted(created)


def test_ips_unique_valid_private_at_60000() -> None:
    nodes = synthetic_cluster(60_000)
    ips = [n.ip for n in nodes]
    assert len(set(ips)) == 60_000
    net = ipaddress.ip_network("10.0.0.0/8")
    for ip in ips:
        assert ip is not None
        addr = ipaddress.ip_address(ip)
        assert addr in net
        last = int(ip.rsplit(".", 1)[1])
        assert 1 <= last <= 254  # no .0 / .255 host parts
    assert "10.0.0.0" not in ips


@given(st.integers(0, ADDRESSES - 1), st.integers(0, ADDRESSES - 1))
def test_synthetic_ip_injective(a: int, b: int) -> None:
    ip_a, ip_b = synthetic_ip(a), synthetic_ip(b)
    assert (ip_a == ip_b) == (a == b)
    assert ipaddress.ip_address(ip_a) in ipaddress.ip_network("10.0.0.0/8")


def test_synthetic_ip_matches_cluster() -> None:
    nodes = synthetic_cluster(600)
    assert [n.ip for n in nodes] == [synthetic_ip(i) for i in range(600)]
    assert synthetic_ip(253) == "10.0.0.254"
    assert synthetic_ip(254) == "10.0.1.1"
    assert synthetic_ip(ADDRESSES - 1) == "10.255.255.254"


def test_zones_without_racks() -> None:
    nodes = synthetic_cluster(10, zones=3)
    assert [n.labels[ZONE_LABEL] for n in nodes] == [
        "zone-a",
        "zone-b",
        "zone-c",
        "zone-a",
        "zone-b",
        "zone-c",
        "zone-a",
        "zone-b",
        "zone-c",
        "zone-a",
    ]
    assert all(RACK not in n.labels for n in nodes)


def test_racks_without_zones() -> None:
    nodes = synthetic_cluster(7, racks=3)
    assert [n.labels[RACK] for n in nodes] == [
        "rack-000",
        "rack-001",
        "rack-002",
        "rack-000",
        "rack-001",
        "rack-002",
        "rack-000",
    ]
    assert all(ZONE_LABEL not in n.labels for n in nodes)


@pytest.mark.parametrize(("racks", "zones"), [(10, 3), (4, 4), (3, 5), (12, 2), (1, 1)])
def test_racks_live_inside_zones(racks: int, zones: int) -> None:
    nodes = synthetic_cluster(500, racks=racks, zones=zones)
    zone_of_rack: dict[str, set[str]] = {}
    for i, n in enumerate(nodes):
        rack = n.labels[RACK]
        assert rack == f"rack-{i % racks:03d}"
        assert n.labels[ZONE_LABEL] == zone_name((i % racks) % zones, zones)
        zone_of_rack.setdefault(rack, set()).add(n.labels[ZONE_LABEL])
    # A rack never spans two zones.
    assert all(len(z) == 1 for z in zone_of_rack.values())
    assert len(zone_of_rack) == racks


def test_custom_labels() -> None:
    nodes = synthetic_cluster(4, zones=2, racks=2, zone_label="zone", rack_label="rack")
    assert nodes[1].labels == {"zone": "zone-b", "rack": "rack-001"}


def test_zone_names() -> None:
    assert [zone_name(i, 3) for i in range(3)] == ["zone-a", "zone-b", "zone-c"]
    assert zone_name(25, 26) == "zone-z"
    many = [zone_name(i, 30) for i in range(30)]
    assert many[:3] == ["zone-aa", "zone-ab", "zone-ac"]
    assert many[26] == "zone-ba"
    assert many == sorted(many) and len(set(many)) == 30
    big = [zone_name(i, 800) for i in range(800)]
    assert big == sorted(big) and len(set(big)) == 800


@pytest.mark.parametrize(("count", "share"), [(1000, 0.1), (1000, 0.3), (999, 0.29), (12, 0.5)])
def test_unhealthy_share(count: int, share: float) -> None:
    nodes = synthetic_cluster(count, unhealthy=share)
    sick = [i for i, n in enumerate(nodes) if not _healthy(n)]
    assert len(sick) == math.floor(count * share + 1e-9)


def test_unhealthy_floor_and_never_all() -> None:
    assert sum(not _healthy(n) for n in synthetic_cluster(10, unhealthy=0.19)) == 1
    assert sum(not _healthy(n) for n in synthetic_cluster(1, unhealthy=0.99)) == 0
    assert sum(not _healthy(n) for n in synthetic_cluster(10, unhealthy=0.9999)) == 9


def test_unhealthy_problems_cycle() -> None:
    nodes = synthetic_cluster(600, unhealthy=0.1)
    kinds: Counter[str] = Counter()
    for n in nodes:
        if _healthy(n):
            continue
        problems = [
            n.conditions["Ready"] == "False",
            n.unschedulable,
            any(
                t.key == "node.kubernetes.io/unreachable" and t.effect == "NoExecute"
                for t in n.taints
            ),
            n.deleting,
            n.conditions["DiskPressure"] == "True",
            any(
                t.key == "node.kubernetes.io/network-unavailable" and t.effect == "NoSchedule"
                for t in n.taints
            ),
        ]
        assert sum(problems) == 1, n  # exactly one problem per node
        kinds[str(problems.index(True))] += 1
    assert kinds == {str(k): 10 for k in range(6)}


def test_unhealthy_spread_over_cluster_racks_and_zones() -> None:
    nodes = synthetic_cluster(10_000, racks=20, zones=4, unhealthy=0.1)
    sick = [i for i, n in enumerate(nodes) if not _healthy(n)]
    assert len(sick) == 1000
    assert sick != list(range(1000))
    # Every tenth of the index range holds roughly a tenth of the unhealthy nodes.
    per_decile = Counter(i * 10 // len(nodes) for i in sick)
    assert all(70 <= per_decile[d] <= 130 for d in range(10)), per_decile
    per_rack = Counter(nodes[i].labels[RACK] for i in sick)
    assert len(per_rack) == 20
    assert all(25 <= c <= 75 for c in per_rack.values()), per_rack
    per_zone = Counter(nodes[i].labels[ZONE_LABEL] for i in sick)
    assert all(150 <= c <= 350 for c in per_zone.values()), per_zone


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 400),
    st.integers(0, 6),
    st.integers(0, 9),
    st.floats(0.0, 0.99),
)
def test_properties(count: int, zones: int, racks: int, share: float) -> None:
    nodes = synthetic_cluster(count, zones=zones, racks=racks, unhealthy=share)
    assert len(nodes) == count
    assert [n.name for n in nodes] == sorted(n.name for n in nodes)
    assert len({n.ip for n in nodes}) == count
    sick = sum(not _healthy(n) for n in nodes)
    assert sick <= count * share + 1e-6
    assert sick < count or count == 0
    for n in nodes:
        assert (ZONE_LABEL in n.labels) == bool(zones)
        assert (RACK in n.labels) == bool(racks)


def test_round_trips_through_kubernetes_objects() -> None:
    for node in synthetic_cluster(50, zones=2, racks=5, unhealthy=0.5):
        back = node_from_k8s(node_to_k8s(node))
        assert back.annotations == {ANN_IPV4: f"{node.ip}/24"}
        assert back == Node(
            name=node.name,
            ip=node.ip,
            labels=node.labels,
            annotations=back.annotations,
            conditions=node.conditions,
            taints=node.taints,
            unschedulable=node.unschedulable,
            deleting=node.deleting,
            created=node.created,
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": -1}, "nodes must be >= 0"),
        ({"nodes": MAX_NODES + 1}, "calico-rr's limit"),
        ({"nodes": 5, "zones": -1}, "zones must be >= 0"),
        ({"nodes": 5, "racks": -2}, "racks must be >= 0"),
        ({"nodes": 5, "unhealthy": 1.0}, "unhealthy"),
        ({"nodes": 5, "unhealthy": -0.1}, "unhealthy"),
        ({"nodes": 5, "unhealthy": float("nan")}, "unhealthy"),
        ({"nodes": 5, "zones": 2, "racks": 2, "zone_label": "x", "rack_label": "x"}, "differ"),
        ({"nodes": 5, "zones": 2, "zone_label": ""}, "zone label"),
        ({"nodes": 5, "racks": 2, "rack_label": ""}, "rack label"),
        ({"nodes": 5, "start": float("inf")}, "start"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        synthetic_cluster(**kwargs)  # type: ignore[arg-type]


def test_fast_at_50000() -> None:
    best = min(
        _timed(lambda: synthetic_cluster(50_000, zones=3, racks=50, unhealthy=0.1))
        for _ in range(3)
    )
    # "Well under a second" on a developer machine; generous bound for loaded CI.
    assert best < 1.5


def test_shares_dicts_between_nodes() -> None:
    nodes = synthetic_cluster(1000, zones=3, racks=10)
    assert len({id(n.labels) for n in nodes}) == 10
    assert len({id(n.conditions) for n in nodes}) == 1


def _timed(fn: object) -> float:
    assert callable(fn)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
