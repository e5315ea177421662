"""Tests for calico_rr.adapters.nodes_io: reading node files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from calico_rr.adapters import nodes_io
from calico_rr.adapters.nodes_io import load_nodes, read_documents
from calico_rr.core.kube import node_to_k8s
from calico_rr.core.synthetic import synthetic_cluster
from calico_rr.errors import InputError
from calico_rr.model import Taint

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", ["nodes.yaml", "nodes.json"])
def test_fixture_files(name: str) -> None:
    nodes, notes = load_nodes(str(FIXTURES / name))
    assert notes == []
    assert [n.name for n in nodes] == ["control-plane", "worker-a", "worker-b"]
    cp, wa, wb = nodes
    assert cp.ip is None and cp.deleting and not cp.ready
    assert cp.conditions == {"Ready": "Unknown"}
    assert wa.ip == "10.0.1.11"  # InternalIP fallback, IPv6 skipped
    assert wa.unschedulable and wa.ready
    assert wa.taints == (Taint("node.kubernetes.io/unschedulable", "NoSchedule"),)
    assert wa.created == 1704164645.0
    assert wb.ip == "10.0.1.12"
    assert wb.labels["topology.kubernetes.io/zone"] == "zone-b"
    assert wb.taints == (Taint("dedicated", "NoSchedule", "infra"),)
    assert wb.conditions["Ready"] == "True"


def test_yaml_and_json_fixtures_agree() -> None:
    from_yaml, _ = load_nodes(str(FIXTURES / "nodes.yaml"))
    from_json, _ = load_nodes(str(FIXTURES / "nodes.json"))
    assert from_yaml == from_json


def _write_list(path: Path, items: list[object], *, as_json: bool) -> None:
    doc = {"apiVersion": "v1", "kind": "NodeList", "items": items}
    path.write_text(json.dumps(doc) if as_json else yaml.safe_dump(doc), encoding="utf-8")


@pytest.mark.parametrize("as_json", [False, True])
def test_generated_nodelist(tmp_path: Path, as_json: bool) -> None:
    cluster = synthetic_cluster(300, zones=3, racks=6, unhealthy=0.2)
    path = tmp_path / ("nodes.json" if as_json else "nodes.yaml")
    _write_list(path, [node_to_k8s(n) for n in reversed(cluster)], as_json=as_json)
    nodes, notes = load_nodes(str(path))
    assert notes == []
    assert [n.name for n in nodes] == [n.name for n in cluster]
    for got, want in zip(nodes, cluster, strict=True):
        assert (got.ip, got.labels, got.conditions, got.taints) == (
            want.ip,
            want.labels,
            want.conditions,
            want.taints,
        )
        assert (got.unschedulable, got.deleting, got.created) == (
            want.unschedulable,
            want.deleting,
            want.created,
        )


def test_multi_document_yaml_with_skips(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        "---\n"
        "apiVersion: v1\nkind: Node\nmetadata: {name: b}\n"
        "---\n"
        "# an empty document\n"
        "---\n"
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: Node, metadata: {name: a}}\n"
        "- {apiVersion: v1, kind: Pod, metadata: {name: p}}\n",
        encoding="utf-8",
    )
    docs = read_documents(str(path))
    assert len(docs) == 3 and docs[1] is None
    nodes, notes = load_nodes(str(path))
    assert [n.name for n in nodes] == ["a", "b"]
    assert len(notes) == 1 and "Pod" in notes[0] and str(path) in notes[0]


def test_unquoted_timestamp_stays_a_string(tmp_path: Path) -> None:
    path = tmp_path / "n.yaml"
    path.write_text(
        "kind: Node\nmetadata:\n  name: n\n  creationTimestamp: 2024-01-02T03:04:05Z\n",
        encoding="utf-8",
    )
    [doc] = read_documents(str(path))
    assert doc["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"
    nodes, _ = load_nodes(str(path))
    assert nodes[0].created == 1704164645.0
    # The raw object stays JSON-encodable (for render --include-nodes).
    json.dumps(node_to_k8s(nodes[0]))


def test_json_document_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "n.json"
    path.write_text('{"kind": "Node", "metadata": {"name": "j"}}', encoding="utf-8")
    assert read_documents(str(path)) == [{"kind": "Node", "metadata": {"name": "j"}}]


def test_yaml_flow_style_starting_with_brace(tmp_path: Path) -> None:
    # Not JSON (unquoted keys) but valid YAML: falls through to the YAML parser.
    path = tmp_path / "flow.yaml"
    path.write_text("{kind: Node, metadata: {name: f}}\n", encoding="utf-8")
    nodes, _ = load_nodes(str(path))
    assert [n.name for n in nodes] == ["f"]


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("kind: Node\nmetadata: {name: s}\n"))
    nodes, _ = load_nodes("-")
    assert [n.name for n in nodes] == ["s"]


def test_stdin_errors_name_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("metadata: {name: s}\n"))
    with pytest.raises(InputError) as info:
        load_nodes("-")
    assert info.value.obj == "document 1 of standard input"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(InputError) as info:
        read_documents(str(path))
    assert info.value.obj == f"file {path}"
    assert "no such file" in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        read_documents(str(tmp_path))
    assert info.value.obj == f"file {tmp_path}"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 0 does not stop root (tests may run as root), so fake the OS error.
    path = tmp_path / "secret.yaml"
    path.write_text("kind: Node\n", encoding="utf-8")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(nodes_io, "open", denied, raising=False)
    with pytest.raises(InputError, match="Permission denied") as info:
        read_documents(str(path))
    assert info.value.obj == f"file {path}"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"kind: Node\nmetadata: {name: \xff\xfe}\n")
    with pytest.raises(InputError, match="UTF-8") as info:
        read_documents(str(path))
    assert info.value.obj == f"file {path}"


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: NodeList\nitems:\n- metadata:\n    name: [a\n  bad: : :\n", "utf-8")
    with pytest.raises(InputError) as info:
        read_documents(str(path))
    assert info.value.obj == f"file {path}"
    assert "invalid YAML at line" in str(info.value)


def test_yaml_error_line_number_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "tab.yaml"
    path.write_text("kind: Node\nmetadata:\n  name: a\n\tlabels: {}\n", "utf-8")
    with pytest.raises(InputError, match="line 4"):
        read_documents(str(path))


def test_broken_json_reports_yaml_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "kind": "Node",\n  "metadata": {"name": "x"\n', "utf-8")
    with pytest.raises(InputError) as info:
        read_documents(str(path))
    assert info.value.obj == f"file {path}"
    assert "line" in str(info.value)


def test_malformed_node_in_file_names_node_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "kind: NodeList\nitems:\n- kind: Node\n  metadata:\n    name: n1\n"
        "    labels:\n      enabled: yes\n",
        "utf-8",
    )
    with pytest.raises(InputError) as info:
        load_nodes(str(path))
    assert info.value.obj == "Node n1"
    assert info.value.field == 'metadata.labels["enabled"]'


def test_unnamed_node_in_file_names_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "kind: NodeList\nitems:\n"
        "- kind: Node\n  metadata: {name: a}\n"
        "- kind: Node\n  metadata: {}\n",
        "utf-8",
    )
    with pytest.raises(InputError) as info:
        load_nodes(str(path))
    assert info.value.obj == f"item 2 of {path}"
    assert info.value.field == "metadata.name"
