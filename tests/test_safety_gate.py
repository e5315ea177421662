"""Issue 14: no path that writes or prints resources to apply may cut a node off.

``render`` and ``plan`` pass the same gate (core.operator.safety.gate_plan) the operator
uses before it switches the mesh off; ``verify`` never calls an empty
configuration verified; ``--force`` overrides and says so; a failed write leaves
the previous file as it was; usage errors are one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from calico_rr.adapters.files import write_atomic
from calico_rr.cli import app
from calico_rr.core.formats.kube import node_to_k8s
from calico_rr.core.operator.safety import gate_plan
from calico_rr.core.operator.settings import settings_from_spec
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.errors import CalicoRRError, ConfigError
from calico_rr.model import ANN_IPV4

runner = CliRunner()
V1: Any = "crd.projectcalico.org/v1"


def node_list(n: int, **edit: Any) -> dict[str, Any]:
    """A NodeList of ``n`` synthetic nodes, each edited by ``_edit``."""
    items = [node_to_k8s(node) for node in synthetic_cluster(n)]
    for item in items:
        _edit(item, **edit)
    return {"apiVersion": "v1", "kind": "NodeList", "items": items}


def _edit(
    item: dict[str, Any],
    *,
    no_ip: bool = False,
    ipv6: bool = False,
    not_ready: bool = False,
) -> None:
    if no_ip or ipv6:
        item["metadata"]["annotations"].pop(ANN_IPV4, None)
        item["status"]["addresses"] = [{"type": "InternalIP", "address": "fd00::1"}] if ipv6 else []
    if not_ready:
        for cond in item["status"]["conditions"]:
            if cond["type"] == "Ready":
                cond["status"] = "False"


def write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


# Each refused input: (name, file content or None for synthetic, extra flags, the
# words the refusal must contain, nodes it must name).
REFUSED: list[tuple[str, Any, list[str], str, list[str]]] = [
    ("empty file", "", [], "has no nodes", []),
    ("items null", "apiVersion: v1\nkind: NodeList\nitems: null\n", [], "has no nodes", []),
    ("no address", node_list(4, no_ip=True), [], "has a BGP address", ["node-00000"]),
    # IPv6-only nodes are planned since issue 17 (tests/test_ipv6_cli.py)
    ("all NotReady", node_list(5, not_ready=True), [], "5 not Ready", ["node-00004"]),
    (
        "dedicated label nobody has",
        node_list(6),
        ["--dedicated-label", "rr=yes"],
        "not a dedicated RR node",
        ["node-00005"],
    ),
]


@pytest.mark.parametrize(("name", "content", "flags", "cause", "named"), REFUSED)
def test_render_refuses_and_writes_nothing(
    tmp_path: Path, name: str, content: Any, flags: list[str], cause: str, named: list[str]
) -> None:
    nodes = write(tmp_path, "nodes.yaml", content)
    out = tmp_path / "out.yaml"
    out.write_text("previous: content\n")
    result = runner.invoke(
        app, ["render", "--nodes-file", nodes, "--output-file", str(out), *flags]
    )
    assert result.exit_code == 1, result.output
    assert "refused" in result.stderr and cause in result.stderr
    for node in named:
        assert node in result.stderr
    assert out.read_text() == "previous: content\n"  # untouched
    to_stdout = runner.invoke(app, ["render", "--nodes-file", nodes, *flags])
    assert to_stdout.exit_code == 1 and to_stdout.stdout == ""


@pytest.mark.parametrize(("name", "content", "flags", "cause", "named"), REFUSED)
def test_plan_refuses_and_never_says_verified(
    tmp_path: Path, name: str, content: Any, flags: list[str], cause: str, named: list[str]
) -> None:
    nodes = write(tmp_path, "nodes.yaml", content)
    result = runner.invoke(app, ["plan", "--nodes-file", nodes, "--json", *flags])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["safety"]["ok"] is False
    assert any(cause in c for c in data["safety"]["causes"])
    assert set(named) <= set(data["safety"]["cut_off"])
    table = runner.invoke(app, ["plan", "--nodes-file", nodes, *flags])
    assert table.exit_code == 1
    assert "Safe to apply (gate)" in table.stdout and "NO" in table.stdout


def test_empty_stdin_and_zero_synthetic_nodes_are_refused() -> None:
    for args, stdin in ((["--nodes-file", "-"], ""), (["--nodes", "0"], None)):
        result = runner.invoke(app, ["render", *args], input=stdin)
        assert result.exit_code == 1, result.output
        assert result.stdout == "" and "has no nodes" in result.stderr


def test_plan_of_an_empty_cluster_does_not_claim_reachability() -> None:
    result = runner.invoke(app, ["plan", "--nodes", "0"])
    assert result.exit_code == 1
    assert "no BGP node" in result.stdout


def test_force_writes_and_says_what_it_overrides(tmp_path: Path) -> None:
    nodes = write(tmp_path, "nodes.yaml", node_list(3, not_ready=True))
    out = tmp_path / "out.yaml"
    result = runner.invoke(
        app, ["render", "--nodes-file", nodes, "--output-file", str(out), "--force"]
    )
    assert result.exit_code == 0, result.output
    assert "--force" in result.stderr and "cuts nodes off" in result.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    assert docs[-1]["spec"]["nodeToNodeMeshEnabled"] is False


def test_a_safe_plan_passes_the_gate(tmp_path: Path) -> None:
    nodes = write(tmp_path, "nodes.yaml", node_list(40))
    result = runner.invoke(app, ["render", "--nodes-file", nodes])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert gate_plan(plan(synthetic_cluster(40), PlanConfig())).ok


def test_some_nodes_without_an_address_do_not_block_a_safe_plan() -> None:
    nodes = list(synthetic_cluster(20))
    nodes[3] = replace(nodes[3], ip=None)
    verdict = gate_plan(plan(nodes, PlanConfig()))
    assert verdict.ok and verdict.bgp_nodes == 19


def test_verify_of_nothing_is_not_verified(tmp_path: Path) -> None:
    empty = write(tmp_path, "empty.yaml", "")
    result = runner.invoke(app, ["verify", "--resources", empty])
    assert result.exit_code == 1
    assert "NOT verified" in result.stdout and "verified 0" not in result.stdout


def test_operator_blocks_with_the_same_explanation() -> None:
    from calico_rr.core.operator.decide import _mesh_off_blocker

    down = [replace(n, conditions={"Ready": "False"}) for n in synthetic_cluster(6)]
    why = _mesh_off_blocker(plan(down, PlanConfig()))
    assert why is not None and "none of the 6 nodes is eligible (6 not Ready)" in why


# -- atomic writes -----------------------------------------------------------------


def test_a_failed_write_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.yaml"
    target.write_bytes(b"x" * 80_000)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CalicoRRError, match="No space left"):
        write_atomic(str(target), b"new", field="--output")
    assert target.read_bytes() == b"x" * 80_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]  # no temp left


def test_write_atomic_keeps_the_mode_and_refuses_directories(tmp_path: Path) -> None:
    target = tmp_path / "out.yaml"
    target.write_text("old")
    target.chmod(0o640)
    write_atomic(str(target), b"new", field="--output")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o640
    with pytest.raises(CalicoRRError, match="is a directory"):
        write_atomic(str(tmp_path), b"x", field="--output")
    with pytest.raises(CalicoRRError, match="No such file"):
        write_atomic(str(tmp_path / "missing" / "x.yaml"), b"x", field="--output")


@pytest.mark.parametrize("bad", ["/nonexistent-dir/x.yaml", "."])
def test_render_to_an_impossible_path_exit_2(bad: str) -> None:
    result = runner.invoke(app, ["render", "--nodes", "30", "--output-file", bad])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--output-file" in result.stderr


# -- one validation for one value --------------------------------------------------

BAD_VALUES: list[tuple[str, str, Any]] = [
    ("--cluster-id-base", "clusterIDBase", "010.0.0.0"),
    ("--cluster-id-base", "clusterIDBase", "1.2.3.²"),
    ("--cluster-id-base", "clusterIDBase", "1.2.3"),
    ("--max-restart-time", "maxRestartTime", "abc; rm -rf /"),
    ("--max-restart-time", "maxRestartTime", "99999999999999h"),
    ("--max-restart-time", "maxRestartTime", "5000s"),
    ("--rrs", "routeReflectors", "1001"),
    ("--redundancy", "redundancy", "17"),
    ("--spines", "spines", "65"),
    ("--session-budget", "sessionBudget", "100001"),
]


@pytest.mark.parametrize(("flag", "field", "value"), BAD_VALUES)
def test_cli_and_operator_refuse_the_same_values(flag: str, field: str, value: str) -> None:
    result = runner.invoke(app, ["render", "--nodes", "10", flag, value])
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1
    spec_value: Any = int(value) if value.isdigit() else value
    with pytest.raises(ConfigError, match=f"spec.{field}"):
        settings_from_spec({field: spec_value}, api_group=V1)


def test_huge_counts_are_refused_by_the_operator() -> None:
    for field in ("routeReflectors", "minRouteReflectors", "maxRouteReflectors", "racks"):
        with pytest.raises(ConfigError, match=f"spec.{field}: must be <="):
            settings_from_spec({field: 10**30}, api_group=V1)


def test_good_values_pass_both() -> None:
    settings = settings_from_spec(
        {"clusterIDBase": "10.0.0.0", "maxRestartTime": "4095s"}, api_group=V1
    )
    assert settings.plan.max_restart_time == "4095s"
    flags = ["--cluster-id-base", "10.0.0.0", "--max-restart-time", "1h"]
    result = runner.invoke(app, ["render", "--nodes", "10", *flags])
    assert result.exit_code == 0, result.output


def test_clamped_counts_warn(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", "--nodes", "10", "--rrs", "100"])
    assert result.exit_code == 0
    assert "100 route reflectors were asked for but only 10" in result.stderr
    result = runner.invoke(
        app, ["plan", "--nodes", "600", "--topology", "multi", "--rrs", "4", "--redundancy", "9"]
    )
    assert result.exit_code == 0
    assert "redundancy 9 is more than this layout can give" in result.stdout


def test_too_many_synthetic_nodes_fail_fast() -> None:
    result = runner.invoke(app, ["render", "--nodes", "10000000"])
    assert result.exit_code == 2 and "at most 100000 nodes" in result.stderr


# -- usage errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["render", "--bogus"], ["render", "--nodes", "abc"], ["nosuch"], ["plan", "--rrs"]],
)
def test_usage_errors_are_one_line(args: list[str]) -> None:
    exe = shutil.which("calico-rr", path=os.path.dirname(sys.executable))
    assert exe is not None
    result = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("calico-rr: error: ")


def test_a_bad_cluster_id_annotation_is_refused_by_every_command(tmp_path: Path) -> None:
    """Issue 14: '1.2.3' passed plan/render and was refused by verify/doctor."""
    nodes = node_list(6)
    nodes["items"][2]["metadata"]["annotations"]["projectcalico.org/RouteReflectorClusterID"] = (
        "1.2.3"
    )
    path = write(tmp_path, "nodes.yaml", nodes)
    lines = set()
    for args in (
        ["render", "--nodes-file", path],
        ["plan", "--nodes-file", path],
        ["verify", "--resources", path],
        ["doctor", "--resources", path],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "node-00002" in result.stderr and "'1.2.3'" in result.stderr, result.stderr
        lines.add(result.stderr.split(": ", 2)[-1])
    assert len(lines) == 1, lines  # the same words from one validation
