"""The `calico-rr` command end to end (in-process via typer's runner, plus one real
subprocess through the installed console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from calico_rr.cli import app
from calico_rr.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE

runner = CliRunner()

PLAN_KEYS = {
    "nodes",
    "topology",
    "route_reflectors",
    "redundancy",
    "cluster_ids",
    "total_sessions",
    "bgppeer_objects",
    "sessions_per_rr",
    "clients_per_rr",
    "rr_peers_per_rr",
    "sessions_per_client",
}


def plan_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_plan_json_has_the_documented_keys() -> None:
    data = plan_json("--nodes", "500", "--topology", "single")
    assert set(data) >= PLAN_KEYS
    for key in ("sessions_per_rr", "clients_per_rr", "rr_peers_per_rr", "sessions_per_client"):
        assert set(data[key]) == {"min", "mean", "max"}  # type: ignore[arg-type]
    assert data["route_reflectors"] == 3
    assert data["clients_per_rr"] == {"min": 497, "mean": 497.0, "max": 497}


def test_plan_table_prints_the_numbers() -> None:
    result = runner.invoke(app, ["plan", "--nodes", "500", "--topology", "single"])
    assert result.exit_code == 0
    assert "Connections / RR" in result.stdout
    assert "499" in result.stdout


def test_plan_stepping_and_hierarchy_flags() -> None:
    data = plan_json("--nodes", "5000", "--topology", "hierarchy", "--racks", "10", "--zones", "3")
    assert data["route_reflectors"] == 33
    assert data["sessions_per_rr"]["max"] <= 510  # type: ignore[index]
    stepped = plan_json("--nodes", "900", "--topology", "multi", "--steps", "200:3,1000:7")
    assert stepped["route_reflectors"] == 7


def test_render_stream_is_apply_ready(tmp_path: Path) -> None:
    out = tmp_path / "rr.yaml"
    result = runner.invoke(
        app,
        [
            "render",
            "--nodes",
            "300",
            "--zones",
            "3",
            "--topology",
            "multi",
            "--output-file",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(out.read_text()))
    kinds = [d["kind"] for d in docs]
    assert kinds.count("BGPConfiguration") == 1
    peers = [d for d in docs if d["kind"] == "BGPPeer"]
    assert peers and all(d["apiVersion"] == "crd.projectcalico.org/v1" for d in peers)
    assert all(d["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE for d in peers)
    conf = next(d for d in docs if d["kind"] == "BGPConfiguration")
    assert conf["spec"]["nodeToNodeMeshEnabled"] is False
    # node documents hold only our own keys (server-side apply configurations)
    nodes = [d for d in docs if d["kind"] == "Node"]
    assert len(nodes) == 300
    for d in nodes:
        assert all(k.startswith("calico-rr.io/") for k in d["metadata"]["labels"])
        assert set(d["metadata"].get("annotations", {})) <= {
            "projectcalico.org/RouteReflectorClusterID"
        }


def test_render_v3_api_group() -> None:
    result = runner.invoke(app, ["render", "--nodes", "20", "--api-group", "v3"])
    assert result.exit_code == 0
    docs = list(yaml.safe_load_all(result.stdout))
    assert {d["apiVersion"] for d in docs if d["kind"] != "Node"} == {"projectcalico.org/v3"}


def test_include_nodes_round_trip_is_stable(tmp_path: Path) -> None:
    """render --include-nodes describes the whole cluster; planning it again keeps
    every assignment, so the second render has no node to change."""
    first = tmp_path / "cluster.yaml"
    r1 = runner.invoke(
        app,
        [
            "render",
            "--nodes",
            "400",
            "--zones",
            "3",
            "--topology",
            "quorum",
            "--include-nodes",
            "--output-file",
            str(first),
        ],
    )
    assert r1.exit_code == 0, r1.output
    again = runner.invoke(
        app, ["plan", "--nodes-file", str(first), "--topology", "quorum", "--json"]
    )
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data["node_changes"] == 0
    direct = plan_json("--nodes", "400", "--zones", "3", "--topology", "quorum")
    assert data["sessions_per_rr"] == direct["sessions_per_rr"]


def test_malformed_nodes_file_exit_2_and_nothing_written(tmp_path: Path) -> None:
    bad = tmp_path / "nodes.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: NodeList\nitems:\n- metadata: {name: n1, labels: [oops]}\n"
    )
    out = tmp_path / "out.yaml"
    result = runner.invoke(app, ["render", "--nodes-file", str(bad), "--output-file", str(out)])
    assert result.exit_code == 2
    assert "Node n1" in result.stderr and "metadata.labels" in result.stderr
    assert not out.exists()


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("kind: NodeList\nitems: [\n")
    result = runner.invoke(app, ["plan", "--nodes-file", str(bad)])
    assert result.exit_code == 2
    assert "broken.yaml" in result.stderr


def test_bad_flags_exit_2() -> None:
    for args in (
        ["plan", "--nodes", "10", "--topology", "ring"],
        ["plan", "--nodes", "10", "--redundancy", "0"],
        ["plan", "--nodes", "10", "--steps", "x"],
        ["plan"],
        ["plan", "--nodes", "10", "--cluster-id-base", "1.2.3"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)


def test_console_script_runs() -> None:
    exe = Path(sys.executable).parent / "calico-rr"
    proc = subprocess.run(
        [str(exe), "plan", "--nodes", "50", "--json"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["topology"] == "single"
