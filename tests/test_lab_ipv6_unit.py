"""The lab's IPv6 side without a lab (issue 17): addresses and blocks, confd's
IPv6 templates in a node's confdir, IPv6 protocol names, the IPv6 IPAM objects,
dual-stack random configurations and the CLI's --ip-family checks."""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

import pytest
from typer.testing import CliRunner

from calico_rr.adapters.calico_bin import locate
from calico_rr.adapters.lab.confd import (
    CALICO_TIMER_LINES,
    block_affinity_document,
    ippool_document,
    node_confdir,
    protocol_address,
)
from calico_rr.adapters.lab.net import node_ip, node_ip6, pod_block6
from calico_rr.cli import app
from calico_rr.core.bgp.families import project
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.lab.bird import BgpTimers
from calico_rr.model import ANN_IPV6
from calico_rr.testing.random_configs import config_shapes, random_config


def test_ipv6_addresses_and_blocks_are_distinct_and_calico_sized() -> None:
    addrs = [node_ip6(i) for i in range(600)]
    blocks = [ipaddress.IPv6Network(pod_block6(i)) for i in range(600)]
    assert node_ip6(0) == "fd99::1:1" and node_ip6(251) == "fd99::2:2"
    assert len(set(addrs)) == 600
    assert all(ipaddress.IPv6Address(a) in ipaddress.IPv6Network("fd99::/64") for a in addrs)
    assert {b.prefixlen for b in blocks} == {122}  # Calico's IPv6 default block size
    assert pod_block6(1) == "fd44::40/122"
    assert not any(a.overlaps(b) for a, b in itertools.pairwise(blocks))
    assert all(b.subnet_of(ipaddress.IPv6Network("fd44::/48")) for b in blocks)


def test_protocol_address_reads_both_families_names() -> None:
    assert protocol_address("Mesh_10_99_1_2") == "10.99.1.2"
    assert protocol_address("Node_10_99_1_2_port_179") == "10.99.1.2"
    assert protocol_address("Mesh_fd99__1_2") == "fd99::1:2"
    assert protocol_address("Global_fd99__1_fa_port_1790") == "fd99::1:fa"
    assert protocol_address("kernel1") is None
    assert protocol_address("Mesh_zz") is None


def test_node_confdir_with_ipv6_runs_bird6_templates_on_bird6(tmp_path: Path) -> None:
    binaries = locate()  # fails (never skips) when Calico's binaries are missing
    sock, sock6 = tmp_path / "n.ctl", tmp_path / "n.ctl6"
    confdir = node_confdir(
        binaries,
        tmp_path,
        sock,
        bird="/usr/sbin/bird",
        birdc="/x/birdc",
        fast_sessions=BgpTimers(),
        ipv6=(sock6, "/usr/sbin/bird6", "/x/birdc6"),
    )
    tomls = sorted(p.name for p in (confdir / "conf.d").iterdir())
    assert tomls == [
        "bird.toml",
        "bird6.toml",
        "bird6_aggr.toml",
        "bird6_ipam.toml",
        "bird_aggr.toml",
        "bird_ipam.toml",
    ]
    six = (confdir / "conf.d" / "bird6.toml").read_text()
    assert f'dest = "{tmp_path}/bird6.cfg"' in six
    assert f'reload_cmd = "/x/birdc6 -s {sock6} configure' in six
    assert 'check_cmd = "/usr/sbin/bird6 -p -c {{.src}}"' in six
    ipam6 = (confdir / "conf.d" / "bird6_ipam.toml").read_text()
    assert str(sock6) in ipam6 and f"-s {sock} " not in ipam6
    main6 = (confdir / "templates" / "bird6.cfg.template").read_text()
    assert f'include "{tmp_path}/bird6_ipam.cfg";' in main6
    assert not any(line in main6 for line in CALICO_TIMER_LINES)  # the session shim too
    # bird6_ipam needs no shim: copied as Calico ships it
    original = (binaries.templates / "bird6_ipam.cfg.template").read_text()
    assert (confdir / "templates" / "bird6_ipam.cfg.template").read_text() == original
    plain = node_confdir(binaries, tmp_path / "p", sock, bird="/b", birdc="/c")
    assert not list((plain / "conf.d").glob("bird6*"))


def test_ipv6_ipam_objects() -> None:
    pool = ippool_document("fd44::/48")
    assert pool["metadata"] == {"name": "lab-pool-v6"}
    spec = pool["spec"]
    assert isinstance(spec, dict) and spec["blockSize"] == 122 and spec["cidr"] == "fd44::/48"
    v4 = ippool_document()["spec"]
    assert isinstance(v4, dict) and v4["blockSize"] == 26
    doc = block_affinity_document("lab-n01", "fd44::40/122")
    assert doc["metadata"] == {"name": "lab-n01-fd44--40-122"}
    assert block_affinity_document("n", "10.244.0.64/26")["metadata"] == {
        "name": "n-10-244-0-64-26"
    }


def test_dual_stack_random_configs_keep_the_ipv4_config_and_leave_some_ipv4_only() -> None:
    pool = [(f"lab-n{i:02d}", node_ip(i)) for i in range(20)]
    ip6 = {name: node_ip6(i) for i, (name, _) in enumerate(pool)}
    mixed = 0
    for seed in range(20):
        plain = random_config(seed, pool, min_nodes=8, max_nodes=20, extended=True)
        dual = random_config(
            seed, pool, min_nodes=8, max_nodes=20, extended=True, ip6=ip6, ipv4_only=0.25
        )
        assert dual == random_config(
            seed, pool, min_nodes=8, max_nodes=20, extended=True, ip6=ip6, ipv4_only=0.25
        )
        stripped = [
            {
                **d,
                "metadata": {
                    **d["metadata"],
                    "annotations": {
                        k: v
                        for k, v in d["metadata"].get("annotations", {}).items()
                        if k != ANN_IPV6
                    },
                },
            }
            if d["kind"] == "Node"
            else d
            for d in dual
        ]
        assert stripped == plain  # the IPv4 configuration of the seed is unchanged
        state = parse_resources(dual).state
        v6 = build_session_graph(project(state, "ipv6"))
        with_v6 = {n.name for n in state.nodes if n.ip6 is not None}
        assert {n.name for n in v6.nodes} == with_v6
        assert all(n.ip6 == ip6[n.name] for n in state.nodes if n.ip6 is not None)
        mixed += config_shapes(dual)["ipv4_only"]
    assert 10 <= mixed < 20
    every = random_config(3, pool, ip6=ip6)
    nodes = [d for d in every if d["kind"] == "Node"]
    assert all(ANN_IPV6 in d["metadata"]["annotations"] for d in nodes)
    with pytest.raises(ValueError, match="share"):
        random_config(3, pool, ip6=ip6, ipv4_only=1.5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ip-family", "ipv5"], "--ip-family must be ipv4, ipv6 or dual"),
        (["--ip-family", "dual", "--renderer", "imitation"], "runs on --renderer confd only"),
    ],
)
def test_lab_cli_refuses_bad_ip_family_before_building_anything(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["lab", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
