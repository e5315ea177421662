"""The command-line conventions kubectl and calicoctl users expect (issue 16 item 7):
``--version``, ``-o table|wide|json|yaml`` (``--json`` = ``-o json``), ``render
--output-file`` with ``-o`` choosing the format, shell completion, exit codes (1 a
runtime failure, 2 bad input) and the ``kubectl calico-rr`` plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from calico_rr.cli import app
from calico_rr.core.operator import NodeState, Observed, Phase, uninstall_preview
from calico_rr.core.operator.settings import settings_from_spec
from calico_rr.model import ANN_CLUSTER_ID, Node

runner = CliRunner()
BIN = Path(sys.executable).parent


def _run(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    return result


def test_version_prints_the_package_version() -> None:
    result = _run("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"calico-rr {version('calico-rr')}\n"


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "--nodes", "60", "--zones", "3"],
        ["verify", "--nodes", "40", "--zones", "2", "--topology", "multi"],
    ],
)
def test_json_and_yaml_are_the_same_data(command: list[str]) -> None:
    as_json = _run(*command, "-o", "json")
    as_yaml = _run(*command, "--output", "yaml")
    alias = _run(*command, "--json")
    assert as_json.exit_code == as_yaml.exit_code == alias.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert isinstance(data, dict) and data["nodes"] in (40, 60)
    assert yaml.safe_load(as_yaml.stdout) == data
    assert alias.stdout == as_json.stdout


def test_plan_wide_adds_rows_to_the_table() -> None:
    table = _run("plan", "--nodes", "60", "--zones", "3")
    wide = _run("plan", "--nodes", "60", "--zones", "3", "-o", "wide")
    assert table.exit_code == wide.exit_code == 0
    assert "Connections / RR" in table.stdout and "Connections / RR" in wide.stdout
    assert "Eligible nodes" in wide.stdout and "Eligible nodes" not in table.stdout


def test_output_choices_are_listed_and_checked() -> None:
    helped = _run("plan", "--help")
    for choice in ("table", "wide", "json", "yaml"):
        assert choice in helped.stdout
    bad = _run("plan", "--nodes", "10", "-o", "xml")
    assert bad.exit_code == 2


def test_render_output_file_and_format(tmp_path: Path) -> None:
    out_yaml = tmp_path / "rr.yaml"
    out_json = tmp_path / "rr.json"
    args = ["render", "--nodes", "30", "--zones", "3"]
    first = _run(*args, "--output-file", str(out_yaml))
    second = _run(*args, "-o", "json", "--output-file", str(out_json))
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert first.stdout == second.stdout == ""  # written to the files only
    docs = list(yaml.safe_load_all(out_yaml.read_text()))
    listed = json.loads(out_json.read_text())
    assert listed["kind"] == "List" and listed["items"] == docs
    assert {d["kind"] for d in docs} >= {"BGPPeer", "BGPConfiguration", "Node"}
    to_stdout = _run(*args, "-o", "yaml")
    assert list(yaml.safe_load_all(to_stdout.stdout)) == docs
    table = _run(*args, "-o", "table")  # render writes resources: no table
    assert table.exit_code == 2


def test_bad_flags_exit_2() -> None:
    for args in (["plan", "--no-such-flag"], ["doctor", "-o", "csv"], ["uninstall", "-o", "x"]):
        assert _run(*args).exit_code == 2, args


def _closed_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose server is a port nothing listens on."""
    path = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["doctor"],
        ["doctor", "-o", "json"],
        ["uninstall", "--dry-run"],
        ["uninstall", "--timeout", "5"],
    ],
)
def test_unreachable_api_server_exits_1_with_one_line(
    tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every retry fails the same way; no backoff between them keeps the test short."""
    from calico_rr.adapters.kube.client import KubeClient

    monkeypatch.setattr(KubeClient, "_delay", lambda *_: 0.0)
    result = _run(*args, "--kubeconfig", str(_closed_kubeconfig(tmp_path)))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("calico-rr: error: ") and "Connection refused" in line


def test_unreachable_api_server_exits_1_from_the_console_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "calico-rr"), "doctor", "--kubeconfig", str(_closed_kubeconfig(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("calico-rr: error: cannot read the cluster:"), line


def test_unreachable_etcd_exits_1() -> None:
    proc = subprocess.run(
        [
            str(BIN / "calico-rr"),
            "doctor",
            "--datastore-type",
            "etcdv3",
            "--etcd-endpoints",
            "http://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "connection refused" in line


def test_kubectl_plugin_runs_the_same_app() -> None:
    plugin = BIN / "kubectl-calico_rr"
    helped = subprocess.run([str(plugin), "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0, helped.stderr
    assert "kubectl calico-rr" in helped.stdout and "uninstall" in helped.stdout
    planned = subprocess.run(
        [str(plugin), "plan", "--nodes", "20", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert planned.returncode == 0 and json.loads(planned.stdout)["nodes"] == 20


def test_shell_completion_is_offered() -> None:
    # the shell is the one the command runs under (typer reads the process's
    # ancestry), as from a user's prompt: a parent bash, not the test's process
    # (under CI's make, or reparented to init, it finds no shell and exits 1)
    shown = subprocess.run(
        ["bash", "-c", '"$0" --show-completion; exit $?', str(BIN / "calico-rr")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0 and "_CALICO_RR_COMPLETE" in shown.stdout
    env = {
        "_CALICO_RR_COMPLETE": "complete_bash",
        "COMP_WORDS": "calico-rr plan -o ",
        "COMP_CWORD": "3",
    }
    completed = subprocess.run(
        [str(BIN / "calico-rr")], capture_output=True, text=True, env=env, check=False
    )
    assert completed.stdout.split() == ["table", "wide", "json", "yaml"]


# -- uninstall --dry-run's steps (pure) -----------------------------------------------


def _installed() -> Observed:
    rr_labels = {"calico-rr.io/rr": "true", "team": "net"}
    nodes = {
        "rr-1": NodeState(
            Node("rr-1", "10.0.0.1", labels=rr_labels, annotations={ANN_CLUSTER_ID: "244.0.0.1"}),
            frozenset({"calico-rr.io/rr"}),
            frozenset({ANN_CLUSTER_ID}),
        ),
        "n-2": NodeState(
            Node("n-2", "10.0.0.2", labels={"calico-rr.io/client": "true"}),
            frozenset({"calico-rr.io/client"}),
        ),
        "user": NodeState(Node("user", "10.0.0.3", labels={"team": "net"})),
    }
    peer = {"apiVersion": "crd.projectcalico.org/v1", "metadata": {"name": "rr-mesh"}}
    return Observed(
        nodes=nodes,
        peers={"rr-mesh": peer},
        mesh_enabled=False,
        node_status_objects=frozenset({"calico-rr-rr-1"}),
        now=1000.0,
    )


def test_preview_lists_every_write_of_the_uninstall_in_order() -> None:
    settings = settings_from_spec(
        {"waitTimeout": "30s"}, env={}, api_group="crd.projectcalico.org/v1"
    )
    steps = uninstall_preview(_installed(), settings, mesh_before=False)
    first, second, third, last = steps
    assert first["create_bgppeers"] == ["calico-rr-bridge"]
    assert first["node_to_node_mesh"] is True and first["then_wait_seconds"] == 30.0
    assert second["remove_from_nodes"] == [
        {"name": "rr-1", "labels": ["calico-rr.io/rr"], "annotations": [ANN_CLUSTER_ID]},
        {"name": "n-2", "labels": ["calico-rr.io/client"], "annotations": []},
    ]
    assert second["delete_bgppeers"] == ["rr-mesh"]
    assert second["delete_caliconodestatuses"] == ["calico-rr-rr-1"]
    assert third["delete_bgppeers"] == ["calico-rr-bridge"]
    assert last["phase"] == Phase.UNINSTALLED.value and "switch it off again" in last["message"]


def test_preview_of_nothing_installed_is_one_step() -> None:
    settings = settings_from_spec({}, env={}, api_group="crd.projectcalico.org/v1")
    bare = Observed(nodes={"a": NodeState(Node("a", "10.0.0.1"))})
    (only,) = uninstall_preview(bare, settings, mesh_before=True)
    assert only == {"phase": "Uninstalled", "message": "uninstalled"}
