"""Tests for calico_rr.adapters.nodes_io: reading node files."""

from __future__ import annotations

import codecs
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_rr.adapters import nodes_io
from calico_rr.adapters.nodes_io import load_nodes, read_documents
from calico_rr.core import limits
from calico_rr.core.formats.kube import node_to_k8s
from calico_rr.core.planning.synthetic import synthetic_cluster
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


def test_broken_json_reports_json_position(tmp_path: Path) -> None:
    # Neither JSON nor YAML: text that starts like JSON gets the JSON parser's message.
    path = tmp_path / "broken.json"
    path.write_text('{\n  "kind": "Node",\n  "metadata": {"name": "x"\n', "utf-8")
    with pytest.raises(InputError) as info:
        read_documents(str(path))
    assert info.value.obj == f"file {path}"
    assert info.value.detail == "invalid JSON at line 4, column 1: Expecting ',' delimiter"


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


# ---------------------------------------------------------------------------
# Issue 14: no crash on any input, within the limits of calico_rr.core.limits
# ---------------------------------------------------------------------------


def _read(tmp_path: Path, text: str | bytes, name: str = "in.yaml") -> list[object]:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return read_documents(str(path))


def _refused(tmp_path: Path, text: str | bytes, name: str = "in.yaml") -> str:
    """The message (without the file name) of the InputError reading ``text`` raises."""
    with pytest.raises(InputError) as info:
        _read(tmp_path, text, name)
    assert info.value.obj == f"file {tmp_path / name}"
    assert "\n" not in str(info.value)
    return info.value.detail


def _nested_yaml(style: str, depth: int) -> str:
    if style == "flow-seq":
        return "[" * depth + "x" + "]" * depth
    if style == "flow-map":
        return "{a: " * depth + "x" + "}" * depth
    if style == "block-seq":
        return "- " * depth + "x\n"
    assert style == "block-map"
    return "".join(" " * i + "a:\n" for i in range(depth - 1)) + " " * (depth - 1) + "a: x\n"


@pytest.mark.parametrize("style", ["flow-seq", "flow-map", "block-seq", "block-map"])
def test_nesting_depth_limit_yaml(tmp_path: Path, style: str) -> None:
    limit = limits.MAX_NESTING_DEPTH
    [doc] = _read(tmp_path, _nested_yaml(style, limit))
    depth = 0
    while isinstance(doc, list | dict):
        doc = doc[0] if isinstance(doc, list) else doc["a"]
        depth += 1
    assert (depth, doc) == (limit, "x")
    message = _refused(tmp_path, _nested_yaml(style, limit + 1))
    # Flow style starts like JSON but is YAML: the YAML limit is what the user hears.
    assert message.startswith("invalid YAML at line ")
    assert message.endswith(
        f"nested more than {limit} levels deep (lists and mappings inside each other)"
    )


@pytest.mark.parametrize("style", ["flow-seq", "block-seq", "block-map"])
def test_30000_levels_of_yaml_do_not_crash(tmp_path: Path, style: str) -> None:
    # libyaml's composer recursed until the process died (exit 139).
    message = _refused(tmp_path, _nested_yaml(style, 30_000))
    assert f"nested more than {limits.MAX_NESTING_DEPTH} levels deep" in message


@pytest.mark.parametrize("depth", [150, 30_000, 1_000_000])
def test_deep_json_refused(tmp_path: Path, depth: int) -> None:
    message = _refused(tmp_path, '{"a": ' * depth + "1" + "}" * depth, "deep.json")
    assert message == (
        f"invalid JSON: nested more than {limits.MAX_NESTING_DEPTH} levels deep "
        "(lists and mappings inside each other)"
    )
    message = _refused(tmp_path, "[" * depth + "]" * depth, "deep.json")
    assert "invalid JSON: nested more than" in message


def test_json_at_the_depth_limit_is_read(tmp_path: Path) -> None:
    depth = limits.MAX_NESTING_DEPTH
    [doc] = _read(tmp_path, "[" * depth + "]" * depth, "ok.json")
    for _ in range(depth - 1):
        assert isinstance(doc, list) and len(doc) == 1
        doc = doc[0]
    assert doc == []


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_refused(tmp_path: Path) -> None:
    # 9 levels: 10^9 strings once expanded, which render --include-nodes would dump.
    message = _refused(tmp_path, _bomb(9))
    assert message.startswith("invalid YAML at line 5, column ")
    assert f"more than {limits.MAX_ALIAS_EXPANSION} extra nodes" in message


def test_alias_bomb_in_many_documents_refused(tmp_path: Path) -> None:
    # Each document alone stays below the limit; the input as a whole does not.
    one = _bomb(4)  # 10,000 strings per document
    [doc] = _read(tmp_path, one)
    assert isinstance(doc, dict) and len(doc["a3"]) == 10
    docs = "---\n".join([one] * (limits.MAX_ALIAS_EXPANSION // 10_000 + 1))
    assert "extra nodes" in _refused(tmp_path, docs)


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    text = (
        "kind: List\nitems:\n"
        "- &n {kind: Node, metadata: {name: a, labels: &l {zone: z1, rack: r1}}}\n"
        "- {kind: Node, metadata: {name: b, labels: *l}}\n"
        "- *n\n"
    )
    [doc] = _read(tmp_path, text)
    assert isinstance(doc, dict)
    items = doc["items"]
    assert items[1]["metadata"]["labels"] == {"zone": "z1", "rack": "r1"}
    assert items[2] == items[0]


def test_recursive_alias_refused(tmp_path: Path) -> None:
    # PyYAML builds a list that contains itself: every walk of it is endless.
    message = _refused(tmp_path, "a: &a [1, {b: *a}]\n")
    assert message == (
        "invalid YAML at line 1, column 15: alias *a inside the node it names "
        "(a recursive structure)"
    )


def test_alias_that_expands_too_deep_refused(tmp_path: Path) -> None:
    half = limits.MAX_NESTING_DEPTH // 2 + 1
    text = "a: &a " + "[" * half + "]" * half + "\nb: " + "[" * half + "*a" + "]" * half + "\n"
    message = _refused(tmp_path, text)
    assert message.startswith("invalid YAML at line 2, column ")
    assert "alias *a expands to a structure nested more than" in message


def test_anchors_do_not_cross_documents(tmp_path: Path) -> None:
    message = _refused(tmp_path, "a: &a [1]\n---\nb: *a\n")
    assert message.startswith("invalid YAML at line 3, column 4:")
    assert "undefined alias" in message


def _big_stdin(monkeypatch: pytest.MonkeyPatch, size: int) -> list[int]:
    """Stdin of ``size`` bytes of a valid YAML comment; returns the read() sizes."""
    reads: list[int] = []

    class Endless(io.RawIOBase):
        left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buf: Any) -> int:
            n = min(len(buf), self.left)
            buf[:n] = b"#" * n
            self.left -= n
            reads.append(n)
            return n

    stream = io.TextIOWrapper(io.BufferedReader(Endless()), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stream)
    return reads


def test_input_size_limit_on_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_INPUT_BYTES", 4 * 1024 * 1024)
    reads = _big_stdin(monkeypatch, 10**12)  # a terabyte: must not be read to the end
    with pytest.raises(InputError) as info:
        read_documents("-")
    assert info.value.obj == "standard input"
    assert info.value.detail == "larger than 4,194,304 bytes, the most calico-rr reads"
    assert sum(reads) <= 4 * 1024 * 1024 + 1024 * 1024 + 8192  # stopped past the limit

    _big_stdin(monkeypatch, 4 * 1024 * 1024)  # exactly the limit: read
    assert read_documents("-") == []


def test_out_of_memory_while_reading_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tight(bytearray):
        """A buffer that runs out of memory past 10 bytes."""

        def extend(self, data: Any) -> None:
            if len(self) >= 10:
                raise MemoryError
            super().extend(data)

    monkeypatch.setattr(nodes_io, "bytearray", Tight, raising=False)
    monkeypatch.setattr(nodes_io, "_CHUNK", 10)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"#" * 30), encoding="utf-8"))
    with pytest.raises(InputError) as info:
        read_documents("-")
    assert str(info.value) == "standard input: too large: out of memory after 10 bytes"


def test_input_size_limit_on_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_INPUT_BYTES", 100)
    text = "kind: Node\nmetadata: {name: a}\n"
    text += "#" * (100 - len(text) - 1) + "\n"
    assert len(text) == 100
    [doc] = _read(tmp_path, text)
    assert isinstance(doc, dict) and doc["metadata"] == {"name": "a"}
    assert _refused(tmp_path, text + "\n") == "larger than 100 bytes, the most calico-rr reads"


def test_default_limit_reads_a_large_dump(tmp_path: Path) -> None:
    # The default limits let a 2,000-node dump through (a quick stand-in for big ones).
    cluster = synthetic_cluster(2000, zones=3, racks=6)
    path = tmp_path / "big.yaml"
    _write_list(path, [node_to_k8s(n) for n in cluster], as_json=False)
    assert path.stat().st_size < limits.MAX_INPUT_BYTES
    nodes, notes = load_nodes(str(path))
    assert len(nodes) == 2000 and notes == []


def test_non_utf8_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    # Was: UnicodeEncodeError when the message (holding a surrogate) was printed.
    data = b"kind: Node\nmetadata: {name: \xff\xfe}\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    with pytest.raises(InputError) as info:
        read_documents("-")
    assert str(info.value) == "standard input: not UTF-8 text (byte 28)"
    assert data[28:29] == b"\xff"
    str(info.value).encode("utf-8")  # printable


def test_non_utf8_on_a_text_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    # A text stream without .buffer, holding surrogate-escaped bytes: same message.
    monkeypatch.setattr("sys.stdin", io.StringIO("a: b\udcffc\n"))
    with pytest.raises(InputError) as info:
        read_documents("-")
    assert str(info.value) == "standard input: not UTF-8 text (byte 4)"


@pytest.mark.parametrize("name", ["bom.yaml", "bom.json"])
def test_utf8_byte_order_mark_accepted(tmp_path: Path, name: str) -> None:
    body = (
        '{"kind": "Node", "metadata": {"name": "b"}}'
        if name.endswith("json")
        else ("kind: Node\nmetadata: {name: b}\n")
    )
    assert _read(tmp_path, codecs.BOM_UTF8 + body.encode(), name) == [
        {"kind": "Node", "metadata": {"name": "b"}}
    ]


def test_utf8_byte_order_mark_on_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = codecs.BOM_UTF8 + b"kind: Node\nmetadata: {name: s}\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    nodes, _ = load_nodes("-")
    assert [n.name for n in nodes] == ["s"]


def test_bad_byte_after_a_byte_order_mark_counts_the_mark(tmp_path: Path) -> None:
    assert _refused(tmp_path, codecs.BOM_UTF8 + b"a: \xc3") == "not UTF-8 text (byte 6)"


def test_utf16_with_byte_order_mark_accepted(tmp_path: Path) -> None:
    # What Windows PowerShell's `kubectl get nodes -o yaml > nodes.yaml` writes.
    data = "kind: Node\nmetadata: {name: ü}\n".encode("utf-16")
    assert _read(tmp_path, data) == [{"kind": "Node", "metadata": {"name": "ü"}}]
    assert _refused(tmp_path, codecs.BOM_UTF16_LE + b"a\x00\x00\xd8") == (
        "not UTF-16 text (byte 4)"
    )


def test_json_syntax_errors_say_json(tmp_path: Path) -> None:
    assert _refused(tmp_path, '{"a": 1,, }', "x.json") == (
        "invalid JSON at line 1, column 9: Expecting property name enclosed in double quotes"
    )
    assert _refused(tmp_path, '{\n  "a": 1\n  "b": 2\n}', "x.json") == (
        "invalid JSON at line 3, column 3: Expecting ',' delimiter"
    )
    # Not JSON but valid YAML flow style (a trailing comma): read as YAML, as before.
    assert _read(tmp_path, '{"a": 1,}', "x.json") == [{"a": 1}]
    assert _refused(tmp_path, "[1, 2", "x.json") == (
        "invalid JSON at line 1, column 6: Expecting ',' delimiter"
    )
    # Text that does not start like JSON is YAML and gets YAML's message.
    assert _refused(tmp_path, "a: [1, 2\n").startswith("invalid YAML at line 2")


def test_long_numbers_refused(tmp_path: Path) -> None:
    limit = limits.MAX_NUMBER_CHARS
    ok = "9" * limit
    assert _read(tmp_path, f'{{"a": {ok}, "b": 1.5}}', "ok.json") == [{"a": int(ok), "b": 1.5}]
    assert _read(tmp_path, f"a: {ok}\nb: 1.5e+3\nc: 0x1F\n") == [
        {"a": int(ok), "b": 1500.0, "c": 31}
    ]
    long = "9" * (limit + 1)
    assert _refused(tmp_path, f'{{"a": {long}}}', "x.json") == (
        f"invalid JSON: a number of {limit + 1} characters (at most {limit})"
    )
    assert _refused(tmp_path, f'{{"a": 1.{long}}}', "x.json").startswith("invalid JSON: a number")
    assert _refused(tmp_path, f"a: {long}\n") == (
        f"invalid YAML at line 1, column 4: a number of {limit + 1} characters (at most {limit})"
    )
    # YAML 1.1 base-60 integers cost quadratic time: 400 KB took 2.4 s.
    assert "a number of" in _refused(tmp_path, "a: 1" + ":0" * 200_000 + "\n")
    # Quoted, a long digit string is a string.
    assert _read(tmp_path, f"a: '{long}'\n") == [{"a": long}]


def test_only_json_values_come_out_of_yaml(tmp_path: Path) -> None:
    assert _read(tmp_path, "a: !!timestamp 2024-01-02T03:04:05Z\n") == [
        {"a": "2024-01-02T03:04:05Z"}
    ]
    for tag, value in [("set", "{x}"), ("binary", "aGk="), ("omap", "[{a: 1}]"), ("pairs", "[]")]:
        assert _refused(tmp_path, f"a: !!{tag} {value}\n") == (
            f"invalid YAML at line 1, column 4: unsupported YAML tag !!{tag}: "
            "Kubernetes objects hold JSON values only"
        )


def test_control_character_message_is_one_line(tmp_path: Path) -> None:
    assert _refused(tmp_path, "kind: Node\nmetadata: {name: a\x00}\n") == (
        "invalid YAML at line 2, column 19: unacceptable character #x0000: "
        "control characters are not allowed"
    )


def test_our_loader_leaves_pyyaml_alone() -> None:
    # The constructors are per class: yaml.SafeLoader itself still builds sets.
    assert yaml.load("a: !!set {x}", Loader=yaml.SafeLoader) == {"a": {"x"}}


@pytest.mark.parametrize(
    ("command", "data", "message"),
    [
        (
            ["plan", "--nodes-file", "-"],
            b"kind: Node\nmetadata: {name: \xff}\n",
            "standard input: not UTF-8 text (byte 28)",
        ),
        (
            ["render", "--nodes-file", "-", "--include-nodes"],
            _bomb(9).encode(),
            "standard input: invalid YAML at line 5, column 45: aliases expand to more than "
            f"{limits.MAX_ALIAS_EXPANSION} extra nodes "
            "(an alias bomb? kubectl never writes aliases)",
        ),
        (
            ["plan", "--nodes-file", "-"],
            b"- " * 30_000 + b"x\n",
            "standard input: invalid YAML at line 1, column 201: nested more than "
            f"{limits.MAX_NESTING_DEPTH} levels deep (lists and mappings inside each other)",
        ),
        (
            ["verify", "--resources", "-"],
            b'{"kind": "List",\n "items": [}',
            "standard input: invalid JSON at line 2, column 12: Expecting value",
        ),
        (
            ["doctor", "--resources", "-"],
            b"[" * 30_000,
            "standard input: invalid JSON: nested more than "
            f"{limits.MAX_NESTING_DEPTH} levels deep (lists and mappings inside each other)",
        ),
    ],
    ids=["non-utf8", "alias-bomb", "deep-yaml", "json-syntax", "deep-json"],
)
def test_cli_exit_2_with_one_line(command: list[str], data: bytes, message: str) -> None:
    from typer.testing import CliRunner

    from calico_rr.cli import app

    result = CliRunner().invoke(app, command, input=data)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"calico-rr: error: {message}\n"
    assert result.stdout == ""
