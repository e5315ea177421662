"""Pure parts of the BGP lab: BIRD control-socket parsing, the comparison with
the verifier, the random configuration generator, address plan."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from pathlib import Path

import pytest

from calico_rr.adapters.lab.birdctl import BirdControl, BirdError, parse_protocols, parse_routes
from calico_rr.adapters.lab.net import node_ip, pod_block
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.lab.prediction import compare_routes, expected_sessions, predicted_routes
from calico_rr.testing.random_configs import config_shapes, random_config

ROUTES = [
    (1007, "10.99.0.0/16       dev eth0 [direct1 10:07:53] * (240)"),
    (1007, "10.244.0.192/26    blackhole [static1 10:07:53] * (200)"),
    (1007, "10.244.0.64/26     via 10.99.1.2 on eth0 [Peer_a 10:07:57] * (100/0) [i]"),
    (1007, "                   via 10.99.1.2 on eth0 [Peer_b 10:07:58 from 10.99.1.9] (100/0) [i]"),
    (1008, "\tType: BGP unicast univ"),
    (0, ""),
]


def test_parse_routes_counts_paths() -> None:
    got = parse_routes(ROUTES)
    assert got == {"10.99.0.0/16": 1, "10.244.0.192/26": 1, "10.244.0.64/26": 2}


def test_parse_protocols() -> None:
    rows = [
        (2002, "name     proto    table    state  since       info"),
        (1002, "Peer_a   BGP      master   up     10:07:57    Established"),
        (
            1002,
            "Peer_b   BGP      master   start  10:07:57    Active        Socket: Connection closed",
        ),
        (1002, "kernel1  Kernel   master   up     10:07:53"),
        (0, ""),
    ]
    got = parse_protocols(rows)
    assert [(p.name, p.established) for p in got] == [
        ("Peer_a", True),
        ("Peer_b", False),
        ("kernel1", False),
    ]
    assert got[1].info == "Active Socket: Connection closed"


def _fake_bird(path: Path, replies: dict[bytes, bytes]) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.sendall(b"0001 BIRD 1.6.8 ready.\n")
        buf = b""
        while True:
            data = conn.recv(4096)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                conn.sendall(replies[line])
        conn.close()
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_control_client_reads_multiline_replies_and_errors(tmp_path: Path) -> None:
    sock = tmp_path / "bird.ctl"
    _fake_bird(
        sock,
        {
            b"show route": b"1007-10.244.0.0/26 via 10.99.1.1 on eth0 [Peer_a] * (100/0) [i]\n"
            b"                   via 10.99.1.1 on eth0 [Peer_b] (100/0) [i]\n"
            b"0000 \n",
            b"bogus": b"9001 syntax error\n",
        },
    )
    ctl = BirdControl(sock, timeout=5)
    assert ctl.routes() == {"10.244.0.0/26": 2}
    with pytest.raises(BirdError, match="syntax error"):
        ctl.call("bogus")
    with pytest.raises(ValueError):
        ctl.call("two\nlines")
    ctl.close()


def test_control_client_names_the_socket_when_absent(tmp_path: Path) -> None:
    with pytest.raises(BirdError, match=r"cannot connect to BIRD at .*nothing\.ctl"):
        BirdControl(tmp_path / "nothing.ctl").call("show status")


def test_address_plan_is_unique() -> None:
    ips = {node_ip(i) for i in range(1000)}
    blocks = {pod_block(i) for i in range(1000)}
    assert len(ips) == len(blocks) == 1000
    assert node_ip(0) == "10.99.1.1" and node_ip(250) == "10.99.2.1"
    assert pod_block(1) == "10.244.0.64/26"


def _lab_a_docs() -> list[dict[str, object]]:
    nodes = [
        ("rr1", "10.0.0.1", "9.9.9.9"),
        ("rr2", "10.0.0.2", "9.9.9.9"),
        ("c3", "10.0.0.3", None),
        ("c4", "10.0.0.4", None),
    ]
    docs: list[dict[str, object]] = []
    for name, ip, cid in nodes:
        ann = {"projectcalico.org/IPv4Address": f"{ip}/24"}
        if cid:
            ann["projectcalico.org/RouteReflectorClusterID"] = cid
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"h": name}, "annotations": ann},
            }
        )
    for pname, a, b in (("m", "rr1", "rr2"), ("x", "c3", "rr1"), ("y", "c4", "rr2")):
        docs.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "BGPPeer",
                "metadata": {"name": pname},
                "spec": {"nodeSelector": f"h == '{a}'", "peerSelector": f"h == '{b}'"},
            }
        )
    docs.append(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": False},
        }
    )
    return docs


def test_prediction_and_comparison_on_lab_a() -> None:
    graph = build_session_graph(parse_resources(_lab_a_docs()).state)
    assert expected_sessions(graph) == {
        frozenset(p) for p in (("rr1", "rr2"), ("c3", "rr1"), ("c4", "rr2"))
    }
    pred = predicted_routes(graph)
    assert pred["c3"] == {"rr1", "rr2"} and pred["rr2"] == {"rr1", "c3", "c4"}
    same = compare_routes(pred, pred)
    assert same.matches and same.observed_missing == {("c3", "c4"), ("c4", "c3")}
    # BIRD showing c3 holding c4's block (more than predicted) is a mismatch
    more = dict(pred, c3=pred["c3"] | {"c4"})
    got = compare_routes(pred, more)
    assert not got.matches and got.only_bird_holds == {("c3", "c4")}
    assert "in BIRD but not predicted" in got.describe()
    less = dict(pred, rr1=frozenset())
    got = compare_routes(pred, less)
    assert got.only_bird_holds == set()
    assert got.only_verifier_holds == {("rr1", "rr2"), ("rr1", "c3"), ("rr1", "c4")}
    assert not got.matches and "predicted but not in BIRD" in got.describe()


def test_comparison_only_over_blocks_that_are_announced() -> None:
    graph = build_session_graph(parse_resources(_lab_a_docs()).state)
    # rr1 and rr2 run no workloads: only c3's and c4's blocks exist
    pred = predicted_routes(graph, origins=["c3", "c4"])
    assert pred["rr1"] == {"c3", "c4"} and pred["c3"] == frozenset()
    got = compare_routes(pred, pred, origins=["c3", "c4"])
    assert got.matches and got.observed_missing == {("c3", "c4"), ("c4", "c3")}
    # holding rr1's block cannot be asked of anyone: rr1 has none
    assert all(origin in {"c3", "c4"} for _, origin in got.observed_missing)
    lost = compare_routes(pred, dict(pred, rr2=frozenset({"c3"})), origins=["c3", "c4"])
    assert lost.only_verifier_holds == {("rr2", "c4")}


def test_random_configs_are_deterministic_and_parse() -> None:
    pool = [(f"lab-n{i:02d}", node_ip(i)) for i in range(12)]
    kinds = set()
    for seed in range(50):
        docs = random_config(seed, pool)
        assert docs == random_config(seed, pool)
        graph = build_session_graph(parse_resources(docs).state)
        kinds.add(bool(expected_sessions(graph)))
        assert 4 <= len(graph.nodes) <= 9
    assert True in kinds


def test_extended_random_configs_have_the_new_shapes() -> None:
    """issue 13 item 4: two AS numbers, global BGPPeers, reversePeering Manual,
    the mesh on beside RRs, negated selectors; 12-20 nodes; broken and working."""
    pool = [(f"lab-n{i:02d}", node_ip(i)) for i in range(20)]
    seen: Counter[str] = Counter()
    for seed in range(60):
        docs = random_config(seed, pool, min_nodes=12, max_nodes=20, extended=True)
        assert docs == random_config(seed, pool, min_nodes=12, max_nodes=20, extended=True)
        shapes = config_shapes(docs)
        assert 12 <= shapes["nodes"] <= 20 and shapes["rrs"] <= 4
        seen.update(shapes)
    kinds = ("ebgp", "global", "manual", "mesh+rr", "not", "broken")
    assert min(seen[k] for k in kinds) >= 8 and seen["broken"] <= 50, seen


def test_control_client_turns_a_vanished_daemon_into_bird_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.ctl"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(2)

    def serve() -> None:  # greet, then hang up on every connection
        for _ in range(2):
            conn, _ = srv.accept()
            conn.sendall(b"0001 BIRD 1.6.8 ready.\n")
            conn.close()
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    with pytest.raises(BirdError, match=r"gone\.ctl"):
        BirdControl(path, timeout=5).routes()


def test_sampler_survives_a_failing_sweep_and_reports_it() -> None:
    import time
    from types import SimpleNamespace

    from calico_rr.adapters.lab.sampler import RouteSampler

    node = SimpleNamespace(name="n1", running=True)
    calls = {"n": 0}

    def held(_node: object) -> frozenset[str]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise AttributeError("'NoneType' object has no attribute 'routes'")
        return frozenset({"n2"}) if calls["n"] < 4 else frozenset()

    agent = SimpleNamespace(lab=SimpleNamespace(nodes=[node]), held=held, v6=None, family="ipv4")
    sampler = RouteSampler(agent, period=0.01)  # type: ignore[arg-type]
    with sampler:
        deadline = time.monotonic() + 10
        while calls["n"] < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
    report = sampler.report()
    error = "AttributeError: 'NoneType' object has no attribute 'routes'"
    assert report["sampler_errors"] == [error]
    # the thread kept going: the later loss of n2's block was still recorded
    assert report["route_losses"] == 1 and report["examples"][0].startswith("n1 lacked n2")


def test_a_clean_stop_that_needed_sigkill_is_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from calico_rr.adapters.lab import net

    def node(name: str, code: str) -> net.LabNode:
        # a daemon that ignores SIGTERM stands in for a BIRD still closing its sessions
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline()  # ready
        proc.stdout.close()
        p = tmp_path / name
        return net.LabNode(name, "ns", "10.99.0.1", "10.0.0.0/26", p, p, p, proc=proc)

    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    stubborn = node("n1", ignore + "; print(1, flush=True); time.sleep(30)")
    prompt = node("n2", "import time; print(1, flush=True); time.sleep(30)")
    monkeypatch.setattr(net, "CLEAN_STOP_GRACE", 0.3)
    lab = net.LabNetwork(2)
    lab.stop_bird(stubborn, kill=False)
    lab.stop_bird(prompt, kill=False)
    assert stubborn.proc is None and prompt.proc is None
    assert lab.forced_stops == ["n1"]


def test_a_lagging_sampler_gives_bounds_not_a_length(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from calico_rr.adapters.lab import sampler as sampling

    clock = {"t": 100.0}
    monkeypatch.setattr(sampling.time, "monotonic", lambda: clock["t"])
    agent = SimpleNamespace(v6=None, family="ipv4")
    s = sampling.RouteSampler(agent, lag_limit=2.0)  # type: ignore[arg-type]

    def sample(at: float, held: set[str]) -> None:
        clock["t"] = at
        s._record("ipv4", "n1", frozenset(held))

    sample(100.0, {"n2"})
    sample(101.0, {"n2"})
    sample(102.0, set())  # lost between 101 and 102
    sample(103.0, set())
    sample(110.0, {"n2"})  # back between 103 and 110: a 7 s gap
    s.stopped = 111.0
    report = s.report()
    assert report["route_losses"] == 1
    assert report["loss_seconds_max"] == 8.0
    # at least 102..103, at most 101..110
    assert report["loss_seconds_max_bounds"] == [1.0, 9.0]
    assert report["sample_gap_seconds_max"] == 7.0 and report["sampler_lagged"] is True
    assert report["examples"] == ["n1 lacked n2 for 1.00s to 9.00s (sampler lagged)"]


def test_a_sampler_on_time_reports_lengths() -> None:
    from types import SimpleNamespace

    from calico_rr.adapters.lab.sampler import RouteSampler

    agent = SimpleNamespace(v6=None, family="ipv4")
    s = RouteSampler(agent)  # type: ignore[arg-type]
    s._record("ipv4", "n1", frozenset({"n2"}))
    s._record("ipv4", "n1", frozenset())
    s._record("ipv4", "n1", frozenset({"n2"}))
    report = s.report()
    assert report["sampler_lagged"] is False and report["route_losses"] == 1
    assert report["examples"][0].startswith("n1 lacked n2 for ")
    assert not report["examples"][0].endswith("(sampler lagged)")


def test_the_sampler_paces_itself_in_a_large_lab() -> None:
    from types import SimpleNamespace

    from calico_rr.adapters.lab.sampler import SAMPLE_PACE, RouteSampler

    def sampler(nodes: int, v6: object = None) -> RouteSampler:
        lab = SimpleNamespace(nodes=[object()] * nodes)
        return RouteSampler(SimpleNamespace(lab=lab, v6=v6, family="ipv4"))  # type: ignore[arg-type]

    assert sampler(16)._period() == 0.1  # a small lab: every 0.1 s
    assert sampler(1000)._period() == 1000 * SAMPLE_PACE == 2.0
    assert sampler(100, v6=object())._period() == 200 * SAMPLE_PACE  # bird6 too


class _SilentBird:
    """A lab agent whose one daemon answers once, then times out."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.v6 = None
        self.answers = [{"lab-n01": "Established"}]
        self.lab = SimpleNamespace(
            nodes=[
                SimpleNamespace(name="lab-n00", ip="10.99.1.1"),
                SimpleNamespace(name="lab-n01", ip="10.99.1.2"),
            ]
        )

    def sessions(self, node: object) -> dict[str, str]:
        if not self.answers:
            raise BirdError("BIRD at lab-n00.ctl: timed out")
        return self.answers.pop()


def test_a_silent_bird_leaves_the_last_status_standing() -> None:
    """A timed-out control socket is no report, not a report of no peers (which
    would hold the operator's confirmation back until the next good one)."""
    from calico_rr.adapters.lab.watcher import bgp_status

    agent = _SilentBird()
    node = agent.lab.nodes[0]
    first = bgp_status(agent, node)  # type: ignore[arg-type]
    assert first is not None
    assert first["numberEstablishedV4"] == 1
    assert first["peersV4"] == [{"peerIP": "10.99.1.2", "type": "NodePeer", "state": "Established"}]
    assert bgp_status(agent, node) is None  # type: ignore[arg-type]
