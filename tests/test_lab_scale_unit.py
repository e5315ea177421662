"""The scale lab's pure parts: BIRD's counters, the host limits, the targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from calico_rr.adapters.lab.birdctl import (
    BirdError,
    RouteCount,
    parse_import_updates,
    parse_route_count,
)
from calico_rr.adapters.lab.net import LabNetwork, cleanup_stale, neighbour_limits
from calico_rr.adapters.lab.scale import ScaleOptions, scale_cluster
from calico_rr.cli import app
from calico_rr.core.lab.prediction import daemon_targets, predicted_routes

# what BIRD 1.6.8 answered in the lab (show protocols all, trimmed to two protocols)
PROTOCOLS_ALL = [
    (2002, "name     proto    table    state  since       info"),
    (1002, "static1  Static   master   up     00:25:17    "),
    (1006, "  Route change stats:     received   rejected   filtered    ignored   accepted"),
    (1006, "    Import updates:              1          0          0          0          1"),
    (1002, "Peer_lab_n01 BGP      master   up     00:25:18    Established   "),
    (1006, "  Route change stats:     received   rejected   filtered    ignored   accepted"),
    (1006, "    Import updates:              4          0          0          0          4"),
    (1006, "    Export updates:             12          0          0        ---         12"),
    (1002, "Peer_lab_n02 BGP      master   up     00:25:18    Established   "),
    (1006, "    Import updates:             17          0          0          0         17"),
    (0, ""),
]


def test_route_count_reads_paths_and_prefixes() -> None:
    assert parse_route_count([(14, "13 of 13 routes for 7 networks")]) == RouteCount(13, 7)
    assert parse_route_count([(14, "12 of 3001 routes for 1001 networks")]) == RouteCount(
        3001, 1001
    )
    with pytest.raises(BirdError, match="no route count"):
        parse_route_count([(8001, "Syntax error")])


def test_import_updates_counts_received_per_bgp_protocol_only() -> None:
    assert parse_import_updates(PROTOCOLS_ALL) == {"Peer_lab_n01": 4, "Peer_lab_n02": 17}


def test_neighbour_limits_raise_then_restore(tmp_path: Path) -> None:
    for key, value in (("gc_thresh1", 128), ("gc_thresh2", 512), ("gc_thresh3", 1024)):
        (tmp_path / key).write_text(f"{value}\n")
    with neighbour_limits(3000, root=tmp_path) as got:
        assert got == {"gc_thresh1": 3000, "gc_thresh2": 6000, "gc_thresh3": 12000}
        assert (tmp_path / "gc_thresh3").read_text() == "12000"
    assert [
        (tmp_path / k).read_text().strip() for k in ("gc_thresh1", "gc_thresh2", "gc_thresh3")
    ] == ["128", "512", "1024"]


def _thresholds(root: Path) -> list[int]:
    return [int((root / k).read_text()) for k in ("gc_thresh1", "gc_thresh2", "gc_thresh3")]


def test_a_killed_labs_neighbour_limits_are_put_back_by_cleanup(tmp_path: Path) -> None:
    root, registry = tmp_path / "sysctl", tmp_path / "registry"
    root.mkdir()
    for key, value in (("gc_thresh1", 128), ("gc_thresh2", 512), ("gc_thresh3", 1024)):
        (root / key).write_text(f"{value}\n")
    lab = LabNetwork(2, registry=registry, lab_id="crrdead")
    lab._record = {"owner": 2**22 + 1}  # no such pid: the lab's process is gone
    limits = neighbour_limits(1000, root=root, lab=lab)
    limits.__enter__()  # and never left: the lab was SIGKILLed
    # recorded before it was made
    record = json.loads((registry / "crrdead.json").read_text())
    assert record["neighbour_limits"]["gc_thresh3"] == [1024, 4000]
    assert _thresholds(root) == [1000, 2000, 4000]
    (root / "gc_thresh3").write_text("9000")  # raised since by someone else: theirs now
    assert cleanup_stale(registry, sysctls=root) == ["crrdead"]
    assert _thresholds(root) == [128, 512, 9000]
    assert not (registry / "crrdead.json").exists()


def test_neighbour_limits_never_lower_a_host_setting(tmp_path: Path) -> None:
    for key in ("gc_thresh1", "gc_thresh2", "gc_thresh3"):
        (tmp_path / key).write_text("50000")
    with neighbour_limits(100, root=tmp_path) as got:
        assert set(got.values()) == {50000}


@pytest.mark.parametrize("topology", ["single", "multi", "quorum", "hierarchy"])
def test_targets_follow_the_verifier(topology: str) -> None:
    _, _, graph = scale_cluster(ScaleOptions(nodes=60, topology=topology))
    want = daemon_targets(graph)
    exact = predicted_routes(graph)
    assert want.held == exact  # the class engine predicts what the exact one does
    for node in graph.nodes:
        # every other block, its own and the lab's connected /16
        assert want.networks[node.name] == len(exact[node.name]) + 2
    rrs = [n.name for n in graph.nodes if n.cluster_id]
    clients = [n.name for n in graph.nodes if not n.cluster_id]
    assert rrs and max(want.sessions[c] for c in clients) < min(want.sessions[r] for r in rrs)


def test_scale_plan_uses_lab_names_and_addresses() -> None:
    p, state, graph = scale_cluster(ScaleOptions(nodes=12, topology="multi"))
    assert [n.name for n in p.nodes][:3] == ["lab-n00", "lab-n01", "lab-n02"]
    assert {n.ip for n in state.nodes} >= {"10.99.1.1", "10.99.1.12"}
    assert len(graph.nodes) == 12


@pytest.mark.parametrize("extra", [["--ip-family", "dual"], ["--scenarios"], ["--dedicated", "2"]])
def test_cli_refuses_what_the_scale_mode_does_not_do(extra: list[str]) -> None:
    res = CliRunner().invoke(app, ["lab", "--scale", "--nodes", "50", *extra])
    assert res.exit_code == 2, res.output
    assert "--scale runs IPv4 clusters" in res.output


def test_cli_refuses_a_scale_lab_over_the_limit() -> None:
    res = CliRunner().invoke(app, ["lab", "--scale", "--nodes", "5000"])
    assert res.exit_code == 2, res.output
    assert "2..1000 nodes" in res.output


def test_scale_summary_lines_say_what_the_json_says() -> None:
    from calico_rr.cli.lab import _scale_lines

    stats = {"median": 4.0, "max": 9.0}
    result = {
        "nodes": 200,
        "topology": "hierarchy",
        "route_reflectors": 12,
        "converged": True,
        "seconds_to_converge": 10.9,
        "sessions_established": 594,
        "sessions_expected": 594,
        "comparison": "BIRD matches the verifier on 200 nodes (0 missing pairs on both sides)",
        "bird": {
            "clients": {"rss_mb": stats},
            "route_reflectors": {"rss_mb": stats, "cpu_s": stats},
        },
        "route_reflector_figures": {
            "sessions": {"max": 67},
            "routes": {"max": 1300},
            "updates_received_over_predicted": {"median": 1.9},
        },
        "failover": {
            "route_reflector": "lab-n00",
            "sampled_clients": 40,
            "clean_stop": {
                "clients_with_loss": 1,
                "loss_seconds_max": 0.3,
                "seconds_until_rr_back": 1.6,
            },
        },
        "seconds_total": 31.0,
    }
    text = "\n".join(_scale_lines(result))
    assert "converged=True in 10.9 s, 594/594 sessions" in text
    assert "lab-n00 clean stop: 1 of 40 sampled clients lost a route (longest 0.3 s)" in text
    assert "crash" not in text  # only the cases that ran


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    from calico_rr.adapters.lab.net import LabError
    from calico_rr.adapters.lab.scale import available_mb

    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       24683840 kB\nMemAvailable:    2097152 kB\n")
    assert available_mb(info) == 2048
    info.write_text("MemTotal:       24683840 kB\n")
    with pytest.raises(LabError, match="no MemAvailable"):
        available_mb(info)


def test_memory_guard_stops_every_daemon_and_says_why() -> None:
    import subprocess
    import time
    from types import SimpleNamespace

    from calico_rr.adapters.lab.net import LabError
    from calico_rr.adapters.lab.scale import MemoryGuard

    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
    lab = SimpleNamespace(nodes=[SimpleNamespace(proc=p) for p in procs])
    guard = MemoryGuard(lab, floor_mb=10**9)  # type: ignore[arg-type]
    # the main thread is interrupted, so that it stops waiting on dead daemons
    with pytest.raises(KeyboardInterrupt), guard:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.1)
    assert guard.tripped is not None
    assert [p.wait(timeout=5) for p in procs] == [-9, -9, -9]
    with pytest.raises(LabError, match="ran out of memory"):
        guard.check()


def test_memory_guard_leaves_a_lab_with_room_alone() -> None:
    import subprocess
    import time
    from types import SimpleNamespace

    from calico_rr.adapters.lab.scale import MemoryGuard

    proc = subprocess.Popen(["sleep", "60"])
    lab = SimpleNamespace(nodes=[SimpleNamespace(proc=proc)])
    try:
        with MemoryGuard(lab, floor_mb=1) as guard:  # type: ignore[arg-type]
            time.sleep(1.2)
        guard.check()
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_neighbour_limits_outside_the_host_namespace_change_nothing(tmp_path: Path) -> None:
    with neighbour_limits(3000, root=tmp_path / "absent") as got:
        assert got == {}
    assert not (tmp_path / "absent").exists()


def test_a_failover_the_memory_guard_stopped_keeps_the_cold_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from calico_rr.adapters.lab import scale

    def stopped(*_a: object, **_k: object) -> dict[str, object]:
        raise KeyboardInterrupt  # what the guard's interrupt_main does

    monkeypatch.setattr(scale, "failover", stopped)
    opts = ScaleOptions(nodes=10)
    tripped = SimpleNamespace(tripped=480)
    got = scale._guarded_failover(None, None, None, opts, tripped, print)  # type: ignore[arg-type]
    assert got == {"aborted": "the memory guard stopped the lab (480 MB available)"}
    with pytest.raises(KeyboardInterrupt):  # a user's Ctrl-C is not swallowed
        scale._guarded_failover(None, None, None, opts, SimpleNamespace(tripped=None), print)  # type: ignore[arg-type]


def test_rrs_and_redundancy_reach_the_scale_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    from calico_rr.adapters.lab import scale

    _, _, graph = scale_cluster(ScaleOptions(nodes=1000, topology="multi", rrs=3, redundancy=2))
    rrs = {n.name for n in graph.nodes if n.cluster_id}
    assert len(rrs) == 3
    idx = graph.index()
    names = [n.name for n in graph.nodes]
    for node in graph.nodes:
        if node.name not in rrs:
            assert sum(1 for j in graph.peers(idx[node.name]) if names[j] in rrs) == 2

    seen: list[ScaleOptions] = []

    def fake_run(options: ScaleOptions, **_: object) -> dict[str, object]:
        seen.append(options)
        raise scale.LabError("not in a unit test")

    monkeypatch.setattr(scale, "run_scale", fake_run)
    args = ["lab", "--scale", "--nodes", "1000", "--topology", "multi", "--rrs", "3"]
    res = CliRunner().invoke(app, [*args, "--redundancy", "2"])
    assert "not in a unit test" in res.output
    assert [(o.rrs, o.redundancy, o.topology) for o in seen] == [(3, 2, "multi")]
