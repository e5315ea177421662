"""The per-node copy of Calico's confdir and the parsing of confd's bird.cfg
(calico_rr.adapters.lab.confd), without a lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico_rr.adapters.calico_bin import locate
from calico_rr.adapters.lab.confd import (
    CALICO_BGP_GR_LINE,
    CALICO_TIMER_LINES,
    SHIM_LINE,
    block_affinity_document,
    node_confdir,
    parse_neighbors,
    shim_fast_sessions,
    shim_ipam_template,
)
from calico_rr.adapters.lab.net import LabError
from calico_rr.core.lab.bird import BgpTimers


def test_node_confdir_rewrites_paths_and_adds_only_the_shim(tmp_path: Path) -> None:
    binaries = locate()  # fails (never skips) when Calico's binaries are missing
    sock = tmp_path / "n.ctl"
    confdir = node_confdir(binaries, tmp_path, sock, bird="/usr/sbin/bird", birdc="/x/birdc")
    tomls = sorted(p.name for p in (confdir / "conf.d").iterdir())
    assert tomls == ["bird.toml", "bird_aggr.toml", "bird_ipam.toml"]
    bird_toml = (confdir / "conf.d" / "bird.toml").read_text()
    assert f'dest = "{tmp_path}/bird.cfg"' in bird_toml
    assert f'reload_cmd = "/x/birdc -s {sock} configure' in bird_toml
    assert 'check_cmd = "/usr/sbin/bird -p -c {{.src}}"' in bird_toml
    assert "/etc/calico" not in bird_toml and "sv hup" not in bird_toml
    main = (confdir / "templates" / "bird.cfg.template").read_text()
    assert f'include "{tmp_path}/bird_aggr.cfg";' in main
    assert f'include "{tmp_path}/bird_ipam.cfg";' in main
    original = (binaries.templates / "bird_ipam.cfg.template").read_text()
    copied = (confdir / "templates" / "bird_ipam.cfg.template").read_text()
    shim = f"filter calico_kernel_programming\n{SHIM_LINE}\n{{"
    assert copied.count(SHIM_LINE) == 1
    assert copied.replace(shim, "filter calico_kernel_programming {") == original


def test_fast_sessions_shim_changes_only_bgp_template_timers_and_gr(tmp_path: Path) -> None:
    """The session shim, on Calico's real template: the three timer lines and the
    BGP sessions' graceful restart change, nothing else (the kernel protocol's
    graceful restart stays); without it the template is Calico's."""
    binaries = locate()
    original = (binaries.templates / "bird.cfg.template").read_text()
    timers = BgpTimers(connect_delay=1, connect_retry=2, error_wait_min=3, error_wait_max=4)
    kw = {"bird": "/usr/sbin/bird", "birdc": "/x/birdc"}
    plain = node_confdir(binaries, tmp_path / "a", tmp_path / "a.ctl", **kw)
    fast = node_confdir(binaries, tmp_path / "b", tmp_path / "b.ctl", fast_sessions=timers, **kw)
    plain_text = (plain / "templates" / "bird.cfg.template").read_text()
    fast_text = (fast / "templates" / "bird.cfg.template").read_text()
    assert all(line in plain_text for line in CALICO_TIMER_LINES)
    assert not any(line in fast_text for line in CALICO_TIMER_LINES)
    for line in timers.lines():
        assert fast_text.count(line + "\n") == 1
    assert CALICO_BGP_GR_LINE not in fast_text and CALICO_BGP_GR_LINE in original
    assert fast_text.count("graceful restart;") == original.count("graceful restart;") - 1
    changed = [
        (a, b)
        for a, b in zip(plain_text.splitlines(), fast_text.splitlines(), strict=True)
        if a.replace(str(tmp_path / "a"), "") != b.replace(str(tmp_path / "b"), "")
    ]
    assert len(changed) == 4
    with pytest.raises(LabError, match="connect delay time 2"):
        shim_fast_sessions("template bgp bgp_template {\n}\n", timers)


def test_shim_needs_the_filter_header_once() -> None:
    with pytest.raises(LabError):
        shim_ipam_template("no filter here")
    out = shim_ipam_template("filter calico_kernel_programming {\n  accept;\n}\n")
    assert out.splitlines()[:3] == ["filter calico_kernel_programming", SHIM_LINE, "{"]


def test_parse_neighbors_reads_confd_protocols() -> None:
    text = """
protocol bgp Mesh_10_99_1_2 from bgp_template {
  neighbor 10.99.1.2 as 64512;
  source address 10.99.1.1;  # The local address
  passive on; # Mesh is unidirectional, peer will connect to us.
}
protocol bgp Node_10_99_1_3 from bgp_template {
  ttl security off;
  multihop;
  neighbor 10.99.1.3 as 64513;
  export filter {
    reject;
  };
  rr client;
  rr cluster id 244.0.0.1;
}
"""
    assert parse_neighbors(text) == {
        "Mesh_10_99_1_2": {
            "neighbor": "10.99.1.2",
            "as": "64512",
            "rr_client": "no",
            "passive": "yes",
        },
        "Node_10_99_1_3": {
            "neighbor": "10.99.1.3",
            "as": "64513",
            "rr_client": "yes",
            "rr_cluster_id": "244.0.0.1",
            "passive": "no",
        },
    }


def test_block_affinity_is_named_like_calicos_ipam() -> None:
    doc = block_affinity_document("lab-n03", "10.244.0.192/26")
    assert doc["metadata"] == {"name": "lab-n03-10-244-0-192-26"}
    assert doc["spec"] == {
        "node": "lab-n03",
        "cidr": "10.244.0.192/26",
        "state": "confirmed",
        "deleted": "false",
    }
