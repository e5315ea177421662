"""Fuzzing the input parsers (issue 14, "no crash on any input").

Every entry point that reads user input must give either a valid result or a
:class:`~calico_rr.errors.CalicoRRError` (InputError, ConfigError) with a one-line,
non-empty message: the CLI turns exactly those into exit 2.  Anything else (a
KeyError, a RecursionError, a segfault) is a bug.

Two kinds of inputs:

* a fixed corpus of nasty files (truncated YAML/JSON, deep nesting, alias bombs,
  odd encodings, wrong types at known fields), each read through every file entry
  point under a tracemalloc memory bound;
* Hypothesis examples: random bytes and text, and structure-aware documents (valid
  Kubernetes Nodes, BGPPeers, BGPConfigurations, Calico Nodes, IPPools and
  Deployments with random values put at the field paths the parsers read), plus
  selectors and RouteReflectorConfig specs.

Examples are bounded by the Hypothesis profile (tests/conftest.py).  Under the
``dev`` and ``ci`` profiles the examples are derandomized (same inputs every run,
no example database); ``long`` (or any other profile) keeps them random for a hunt.
"""

from __future__ import annotations

import copy
import json
import os
import random
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico_rr.adapters.kube.inventory import load_dump
from calico_rr.adapters.nodes_io import load_nodes, read_documents
from calico_rr.core import limits
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.selector import Selector, expr_depth, parse_selector, to_text
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.doctor.checks import diagnose
from calico_rr.core.doctor.inventory import inventory_from_documents
from calico_rr.core.formats.kube import node_to_k8s, nodes_from_documents
from calico_rr.core.operator.settings import ENV_VARS, SPEC_FIELDS, settings_from_spec
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import plan_graph
from calico_rr.errors import CalicoRRError
from calico_rr.model import Node

FIXTURES = Path(__file__).parent / "fixtures"

#: Deterministic under ``dev`` and ``ci``; any other profile (``long``) is a hunt with
#: fresh random examples.  max_examples comes from the profile.
_HUNT = os.environ.get("HYPOTHESIS_PROFILE", "dev") not in ("dev", "ci")
FUZZ = (
    settings(deadline=None) if _HUNT else settings(derandomize=True, database=None, deadline=None)
)
FUZZ = settings(
    FUZZ,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)

#: Peak of Python allocations while reading one corpus file (tracemalloc).  The
#: largest corpus file is ~400 KB; a bomb that gets through needs gigabytes.
MEMORY_BOUND = 64 * 1024 * 1024


# ---------------------------------------------------------------------------
# The contract
# ---------------------------------------------------------------------------


def _check_error(exc: CalicoRRError) -> None:
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} with an empty message"
    assert "\n" not in message and "\r" not in message, f"multi-line message: {message!r}"
    message.encode("utf-8")  # printable (no lone surrogates): was a UnicodeEncodeError


def _check_notes(notes: Any) -> None:
    """Notes (skipped objects, merged API groups) are printed one per line too."""
    for note in notes:
        assert isinstance(note, str) and note.strip(), f"empty note in {notes!r}"
        assert "\n" not in note and "\r" not in note, f"multi-line note: {note!r}"


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """(True, result) or (False, the CalicoRRError); any other exception fails the test."""
    try:
        return True, fn(*args, **kwargs)
    except CalicoRRError as exc:
        _check_error(exc)
        return False, exc


# ---------------------------------------------------------------------------
# File entry points
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(directory: Path, data: bytes, suffix: str = ".yaml") -> str:
    fd, name = tempfile.mkstemp(suffix=suffix, dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return name


def read_through_everything(path: str) -> None:
    """Every reader of a file: nodes (plan/render), resources (verify) and the
    doctor's dump, each followed by what the command does next with the result."""
    ok, docs = outcome(read_documents, path)
    if ok:
        assert isinstance(docs, list)
        json.dumps(docs)  # JSON values only: render --include-nodes dumps them
        _through_documents(docs)
    ok, loaded = outcome(load_nodes, path)
    if ok:
        nodes, notes = loaded
        _check_notes(notes)
        assert [n.name for n in nodes] == sorted(n.name for n in nodes)
        _plan(nodes)
    ok, inventory = outcome(load_dump, path)
    if ok:
        _check_notes(inventory.notes)
        outcome(diagnose, inventory)


def _plan(nodes: list[Node]) -> None:
    """What plan/render do with nodes read from a file: plan them, read the rendered
    resources back, and write the nodes out again (render --include-nodes)."""
    json.dumps([node_to_k8s(n) for n in nodes])
    ok, made = outcome(plan, nodes, PlanConfig())
    if ok:
        outcome(plan_graph, made)


def _through_documents(docs: list[Any]) -> None:
    ok, loaded = outcome(nodes_from_documents, docs, where="fuzz")
    if ok:
        _check_notes(loaded[1])
        _plan(loaded[0])
    ok, parsed = outcome(parse_resources, docs, where="fuzz")
    if ok:
        _check_notes(parsed.notes)
        outcome(build_session_graph, parsed.state)
    ok, inventory = outcome(inventory_from_documents, docs, where="fuzz")
    if ok:
        _check_notes(inventory.notes)
        outcome(diagnose, inventory)


# ---------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------


def _truncations(text: str, count: int) -> Iterator[tuple[str, str]]:
    step = max(1, len(text) // count)
    for cut in range(1, len(text), step):
        yield f"cut{cut}", text[:cut]


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _node(**meta: Any) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", **meta}})


def _peer(spec: dict[str, Any]) -> str:
    doc = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPPeer",
        "metadata": {"name": "p"},
        "spec": spec,
    }
    return json.dumps(doc)


def _corpus() -> dict[str, bytes]:
    nodes_yaml = (FIXTURES / "nodes.yaml").read_text("utf-8")
    nodes_json = (FIXTURES / "nodes.json").read_text("utf-8")
    texts: dict[str, str] = {
        "empty": "",
        "blank": " \n\t\n",
        "separator": "---",
        "end-marker": "--- \n...\n",
        "null": "null",
        "tilde": "~",
        "empty-list": "[]",
        "empty-map": "{}",
        "scalar": "hello",
        "number": "42",
        "items-null": "kind: NodeList\nitems: null\n",
        "items-int": "kind: List\nitems: 5\n",
        "items-odd": "kind: NodeList\nitems: [null, 1, 'x', [], {}, [[]]]\n",
        "kind-list": "kind: [Node]\nmetadata: {name: a}\n",
        "name-list": "kind: Node\nmetadata: {name: [a]}\n",
        "name-map": "kind: Node\nmetadata: {name: {a: 1}}\n",
        "name-int": "kind: Node\nmetadata: {name: 12}\n",
        "name-empty": "kind: Node\nmetadata: {name: ''}\n",
        "metadata-list": "kind: Node\nmetadata: [1]\n",
        "labels-list": "kind: Node\nmetadata: {name: a, labels: [a, b]}\n",
        "labels-int-key": "kind: Node\nmetadata: {name: a, labels: {1: a}}\n",
        "labels-null-key": "kind: Node\nmetadata: {name: a, labels: {null: a}}\n",
        "labels-bool-value": "kind: Node\nmetadata: {name: a, labels: {a: true}}\n",
        "labels-nested": "kind: Node\nmetadata: {name: a, labels: {a: {b: c}}}\n",
        "annotations-null": "kind: Node\nmetadata: {name: a, annotations: null}\n",
        "ipv4-garbage": _node(annotations={"projectcalico.org/IPv4Address": "1.2.3.²/24"}),
        "ipv4-int": _node(annotations={"projectcalico.org/IPv4Address": 5}),
        "cluster-id-short": _node(
            annotations={"projectcalico.org/RouteReflectorClusterID": "1.2.3"}
        ),
        "asn-huge": _node(annotations={"projectcalico.org/ASNumber": "9" * 40}),
        "timestamp-garbage": _node(creationTimestamp="2024-13-45T99:99:99Z"),
        "timestamp-int": _node(creationTimestamp=1704164645),
        "timestamp-far": _node(creationTimestamp="99999-01-01T00:00:00Z"),
        "deletion-list": _node(deletionTimestamp=[]),
        "status-string": '{"kind": "Node", "metadata": {"name": "a"}, "status": "up"}',
        "addresses-map": '{"kind": "Node", "metadata": {"name": "a"}, "status": {"addresses": {}}}',
        "address-null": '{"kind": "Node", "metadata": {"name": "a"}, '
        '"status": {"addresses": [{"type": "InternalIP", "address": null}]}}',
        "conditions-strings": '{"kind": "Node", "metadata": {"name": "a"}, '
        '"status": {"conditions": ["Ready"]}}',
        "taints-bad": '{"kind": "Node", "metadata": {"name": "a"}, '
        '"spec": {"taints": [{"key": 1, "effect": null}], "unschedulable": "yes"}}',
        "duplicate-nodes": "kind: List\nitems:\n- {kind: Node, metadata: {name: a}}\n"
        "- {kind: Node, metadata: {name: a}}\n",
        "duplicate-keys": "kind: Node\nkind: Pod\nmetadata: {name: a}\n",
        "many-documents": "---\n" * 10_000,
        "tab-indent": "kind: Node\nmetadata:\n\tname: a\n",
        "nul": "kind: Node\x00\n",
        "control": "kind: Node\nmetadata: {name: \x07}\n",
        "python-tag": "!!python/object/apply:os.system ['true']\n",
        "custom-tag": "kind: !custom Node\n",
        "set-tag": "kind: Node\nmetadata: !!set {name}\n",
        "timestamp-tag": "kind: Node\nmetadata:\n  name: a\n"
        "  creationTimestamp: !!timestamp 2024-01-02\n",
        "binary-tag": "kind: Node\nmetadata: {name: !!binary aGk=}\n",
        "unhashable-key": "? [a, b]\n: c\n",
        "merge": "base: &b {kind: Node}\nnode:\n  <<: *b\n  metadata: {name: a}\n",
        "merge-int": "a: {<<: 5}\n",
        "undefined-alias": "a: *nowhere\n",
        "recursive-alias": "kind: List\nitems: &i [*i]\n",
        "alias-bomb": _bomb(9),
        "deep-flow": "[" * 30_000 + "]" * 30_000,
        "deep-block": "- " * 30_000 + "x\n",
        "deep-map": "{a: " * 30_000,
        "deep-json": '{"a": ' * 30_000 + "1" + "}" * 30_000,
        "deep-unclosed-json": "[" * 100_000,
        "json-nan": '{"kind": "Node", "metadata": {"name": NaN}}',
        "json-infinity": '{"kind": "List", "items": [Infinity, -Infinity, 1e999]}',
        "json-big-int": '{"kind": "Node", "metadata": {"name": ' + "9" * 5000 + "}}",
        "json-trailing": '{"kind": "Node"} {"kind": "Node"}',
        "yaml-big-int": "kind: Node\nmetadata: {name: " + "9" * 5000 + "}\n",
        "sexagesimal": "a: 1" + ":0" * 200_000 + "\n",
        "long-value": "kind: Node\nmetadata: {name: a, labels: {a: " + "v" * 1_000_000 + "}}\n",
        "peer-parens": _peer({"peerSelector": "(" * 5000 + "all()" + ")" * 5000}),
        "peer-bangs": _peer({"nodeSelector": "!" * 5000 + "all()", "peerSelector": "all()"}),
        "peer-long": _peer({"peerSelector": "a == 'b' || " * 5000 + "all()"}),
        "peer-selector-int": _peer({"peerSelector": 5}),
        "peer-asn-huge": _peer({"asNumber": 10**30, "peerIP": "10.0.0.1"}),
        "peer-asn-float": _peer({"asNumber": 6.5e4, "peerIP": "10.0.0.1"}),
        "peer-ip-garbage": _peer({"peerIP": "10.0.0.1:99999999", "asNumber": 1}),
        "peer-restart": _peer({"peerSelector": "all()", "maxRestartTime": "99999999999999h"}),
        "peer-spec-list": '{"kind": "BGPPeer", "apiVersion": "crd.projectcalico.org/v1", '
        '"metadata": {"name": "p"}, "spec": []}',
        "bgpconfig-mesh-string": '{"kind": "BGPConfiguration", "apiVersion": '
        '"crd.projectcalico.org/v1", "metadata": {"name": "default"}, '
        '"spec": {"nodeToNodeMeshEnabled": "false", "asNumber": -1}}',
        "ippool-bad": '{"kind": "IPPool", "apiVersion": "crd.projectcalico.org/v1", '
        '"metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/33", "ipipMode": 3}}',
        "deployment-bad": '{"kind": "Deployment", "apiVersion": "apps/v1", "metadata": '
        '{"name": "calico-typha", "namespace": "calico-system"}, "spec": {"replicas": "3"}}',
        "nodes-yaml": nodes_yaml,
        "nodes-json": nodes_json,
    }
    for cut, text in _truncations(nodes_yaml, 25):
        texts[f"nodes-yaml-{cut}"] = text
    for cut, text in _truncations(nodes_json, 25):
        texts[f"nodes-json-{cut}"] = text
    corpus = {name: text.encode("utf-8") for name, text in texts.items()}
    rng = random.Random(14)
    for i in range(8):
        corpus[f"random-bytes-{i}"] = rng.randbytes(rng.randrange(1, 2000))
    corpus.update(
        {
            "latin1": "kind: Node\nmetadata: {name: café}\n".encode("latin-1"),
            "utf8-bom": b"\xef\xbb\xbfkind: Node\nmetadata: {name: a}\n",
            "bom-only": b"\xef\xbb\xbf",
            "utf16": "kind: Node\nmetadata: {name: a}\n".encode("utf-16"),
            "utf16-odd": b"\xff\xfea\x00b",
            "utf16-no-bom": "kind: Node\n".encode("utf-16-le"),
            "utf32": "kind: Node\n".encode("utf-32"),
        }
    )
    return corpus


CORPUS = _corpus()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus(fuzz_dir: Path, name: str) -> None:
    path = _write(fuzz_dir, CORPUS[name])
    tracemalloc.start()
    try:
        read_through_everything(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"{name}: {peak} bytes at the peak"


def test_corpus_reaches_the_deep_code() -> None:
    # The corpus is worth something only if parts of it get past the readers.
    ok_docs = ok_nodes = 0
    with tempfile.TemporaryDirectory() as directory:
        for data in CORPUS.values():
            path = _write(Path(directory), data)
            ok_docs += outcome(read_documents, path)[0]
            ok_nodes += outcome(load_nodes, path)[0]
    assert ok_docs > len(CORPUS) // 2
    assert ok_nodes > 10


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

ODD_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "a\nb",
        "x" * 300,
        "10.0.0.1",
        "10.0.0.1/24",
        "10.0.0.1/99",
        "010.0.0.1",
        "1.2.3.²",
        "1.2.3",
        "256.0.0.1",
        "::1",
        "fe80::1/64",
        "0",
        "-1",
        "64512",
        "4294967296",
        "9" * 30,
        "all()",
        "has(x)",
        "!has(x)",
        "(((",
        "a == 'b' || all()",
        "2024-01-02T03:04:05Z",
        "2024-13-45T99:99:99Z",
        "99999-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "2024-01-02T03:04:05+25:00",
        "2024-01-02T03:04:05.123456789Z",
        "10.0.0.1/0",
        "10.0.0.1/32",
        "0.0.0.0",
        "255.255.255.255",
        "[::1]:179",
        "10.0.0.1:0",
        "True",
        "null",
        "NoSchedule",
        "InternalIP",
        "120s",
        "99999999999999h",
        "1.5h",
        "Auto",
        "Manual",
        "Always",
        "CrossSubnet",
        "default",
        "calico-typha",
        "calico-system",
    ]
)
SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 65535, 2**31, 2**32, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    ODD_STRINGS,
)
KEYS: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["name", "spec", "items", "kind", "metadata", "labels", "a/b"]),
    st.integers(min_value=-5, max_value=5),
    st.none(),
    st.booleans(),
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(KEYS, inner, max_size=4),
    ),
    max_leaves=8,
)

GROUPS = st.sampled_from(["crd.projectcalico.org/v1", "projectcalico.org/v3"])


def _base_k8s_nodes() -> list[dict[str, Any]]:
    nodes = [node_to_k8s(n) for n in synthetic_cluster(4, zones=2, racks=2, unhealthy=0.25)]
    nodes[0]["spec"]["taints"] = [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]
    nodes[1]["metadata"]["annotations"]["projectcalico.org/RouteReflectorClusterID"] = "1.0.0.1"
    nodes[1]["metadata"]["annotations"]["projectcalico.org/ASNumber"] = "64512"
    return nodes


BASE_NODES = _base_k8s_nodes()

#: Field paths the parsers read, per kind (an int is a list index).
NODE_PATHS: list[tuple[Any, ...]] = [
    ("apiVersion",),
    ("kind",),
    ("metadata",),
    ("metadata", "name"),
    ("metadata", "labels"),
    ("metadata", "labels", "topology.kubernetes.io/zone"),
    ("metadata", "labels", "calico-rr.io/rr-slot"),
    ("metadata", "annotations"),
    ("metadata", "annotations", "projectcalico.org/IPv4Address"),
    ("metadata", "annotations", "projectcalico.org/RouteReflectorClusterID"),
    ("metadata", "annotations", "projectcalico.org/ASNumber"),
    ("metadata", "creationTimestamp"),
    ("metadata", "deletionTimestamp"),
    ("metadata", "managedFields"),
    ("spec",),
    ("spec", "unschedulable"),
    ("spec", "taints"),
    ("spec", "taints", 0),
    ("spec", "taints", 0, "key"),
    ("spec", "taints", 0, "value"),
    ("spec", "taints", 0, "effect"),
    ("status",),
    ("status", "addresses"),
    ("status", "addresses", 0),
    ("status", "addresses", 0, "type"),
    ("status", "addresses", 0, "address"),
    ("status", "conditions"),
    ("status", "conditions", 0),
    ("status", "conditions", 0, "type"),
    ("status", "conditions", 0, "status"),
]
PEER_PATHS: list[tuple[Any, ...]] = [
    ("apiVersion",),
    ("metadata", "name"),
    ("spec",),
    ("spec", "node"),
    ("spec", "nodeSelector"),
    ("spec", "peerSelector"),
    ("spec", "peerIP"),
    ("spec", "asNumber"),
    ("spec", "keepOriginalNextHop"),
    ("spec", "reversePeering"),
    ("spec", "maxRestartTime"),
    ("spec", "password"),
    ("spec", "password", "secretKeyRef"),
    ("spec", "password", "secretKeyRef", "name"),
    ("spec", "password", "secretKeyRef", "key"),
]
OTHER_PATHS: list[tuple[Any, ...]] = [
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("spec",),
    ("spec", "nodeToNodeMeshEnabled"),
    ("spec", "asNumber"),
    ("spec", "bgp"),
    ("spec", "bgp", "ipv4Address"),
    ("spec", "bgp", "routeReflectorClusterID"),
    ("spec", "bgp", "asNumber"),
    ("spec", "cidr"),
    ("spec", "ipipMode"),
    ("spec", "vxlanMode"),
    ("spec", "natOutgoing"),
    ("spec", "disabled"),
    ("spec", "replicas"),
]


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> None:
    """Put ``value`` at ``path`` in ``doc`` (or delete it), creating what is missing;
    gives up quietly where an earlier mutation left a scalar on the way."""
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(step, int):
            if not isinstance(doc, list):
                return
            if step >= len(doc):
                if delete:
                    return
                doc.append({} if not last else value)
            if last:
                if delete:
                    del doc[step]
                else:
                    doc[step] = value
                return
            doc = doc[step]
        else:
            if not isinstance(doc, dict):
                return
            if last:
                if delete:
                    doc.pop(step, None)
                else:
                    doc[step] = value
                return
            if step not in doc:
                doc[step] = [] if isinstance(path[i + 1], int) else {}
            doc = doc[step]


def _mutate(draw: st.DrawFn, doc: Any, paths: list[tuple[Any, ...]]) -> None:
    """One random change at one of ``paths``: a random value there, or (a quarter of
    the time) the field deleted."""
    path = draw(st.sampled_from(paths))
    delete = draw(st.booleans()) and draw(st.booleans())
    _set(doc, path, None if delete else draw(VALUES), delete)


SELECTOR_WORDS = st.sampled_from(
    [
        "(", ")", "!", "&&", "||", " ", "all()", "has(", "a", "b/c.d", "==", "!=", "'x'",
        '"y"', "in", "not", "{", "}", ",", "starts", "ends", "with", "contains", "'",
    ]
)  # fmt: skip
GOOD_SELECTORS = st.sampled_from(
    [
        "all()",
        "has(calico-rr.io/rr-slot)",
        "!has(calico-rr.io/rr-slot)",
        "calico-rr.io/rr-slot in {'r0', 'r1'}",
        "topology.kubernetes.io/zone == 'zone-a' || all()",
        "kubernetes.io/hostname starts with 'node-'",
    ]
)
SELECTOR_TEXT = st.one_of(
    GOOD_SELECTORS,
    st.lists(SELECTOR_WORDS, max_size=25).map("".join),
    st.lists(SELECTOR_WORDS, max_size=25).map(" ".join),
    st.text(max_size=40),
    st.text(alphabet="()!&|=' \"{},ab/", max_size=80),
)
NODE_NAMES = [n["metadata"]["name"] for n in BASE_NODES]


@st.composite
def peers(draw: st.DrawFn) -> dict[str, Any]:
    """A BGPPeer, valid more often than not (named later: names must be unique)."""
    spec: dict[str, Any] = {}
    if draw(st.integers(min_value=0, max_value=3)) > 0:
        spec["peerSelector"] = draw(st.one_of(GOOD_SELECTORS, SELECTOR_TEXT))
        if draw(st.booleans()):
            spec["nodeSelector"] = draw(st.one_of(GOOD_SELECTORS, SELECTOR_TEXT))
    else:
        spec["peerIP"] = draw(st.sampled_from(["10.0.0.1", "10.1.2.3:179", "192.168.9.9"]))
        spec["asNumber"] = 64513
        if draw(st.booleans()):
            spec["node"] = draw(st.sampled_from(NODE_NAMES))
    return {"apiVersion": "", "kind": "BGPPeer", "metadata": {"name": ""}, "spec": spec}


def _other(kind: str, api: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if kind == "Deployment":
        meta["namespace"] = "calico-system"
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


OTHERS = [
    _other("BGPConfiguration", "", "default", {"nodeToNodeMeshEnabled": False, "asNumber": 64512}),
    _other("Node", "", "node-0009", {"bgp": {"ipv4Address": "10.0.0.1/24"}}),
    _other("IPPool", "", "pool", {"cidr": "192.168.0.0/16", "ipipMode": "Always"}),
    _other("Deployment", "apps/v1", "calico-typha", {"replicas": 3}),
]


@st.composite
def documents(draw: st.DrawFn) -> list[Any]:
    """A decoded input: valid Kubernetes Nodes and Calico objects (one API group, or
    both), then 0-3 random changes at field paths the parsers read, packed as one
    List/NodeList or as several documents.  Mostly one change: one bad field is
    enough to refuse a whole input, so more would rarely get past the first."""
    group = draw(st.sampled_from(["crd.projectcalico.org/v1", "projectcalico.org/v3", "both"]))
    at_least = draw(st.sampled_from([0, 1, 1, 1]))
    nodes = draw(
        st.lists(st.sampled_from(BASE_NODES), min_size=at_least, max_size=4, unique_by=_name)
    )
    peer_list = draw(st.lists(peers(), max_size=3))
    other_list = draw(st.lists(st.sampled_from(OTHERS), max_size=3, unique_by=_kind))
    items: list[Any] = [copy.deepcopy(n) for n in nodes]
    calico = [copy.deepcopy(o) for o in [*peer_list, *other_list]]
    for i in range(len(peer_list)):
        calico[i]["metadata"]["name"] = f"peer-{i}"
    for obj in calico:
        if not obj["apiVersion"]:
            obj["apiVersion"] = "crd.projectcalico.org/v1" if group == "both" else group
    if group == "both":  # the same objects in the other group too
        for obj in list(calico):
            if obj["apiVersion"] == "crd.projectcalico.org/v1":
                twin = copy.deepcopy(obj)
                twin["apiVersion"] = "projectcalico.org/v3"
                calico.append(twin)
    items += calico
    # Paths chosen before any change: a change may remove kind or apiVersion.
    targets = [(obj, _paths_of(obj)) for obj in items]
    changes = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
    for _ in range(changes if targets else 0):
        obj, paths = draw(st.sampled_from(targets))
        _mutate(draw, obj, paths)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        items.insert(draw(st.integers(min_value=0, max_value=len(items))), draw(VALUES))
    items = draw(st.permutations(items))
    shape = draw(st.sampled_from(["List", "NodeList", "List", "documents", "single"]))
    if shape == "documents":
        return items
    if shape == "single":
        return items[:1]
    wrapper: dict[str, Any] = {"apiVersion": "v1", "kind": shape, "items": items}
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        _mutate(draw, wrapper, [("items",), ("kind",), ("apiVersion",), ("metadata",)])
    return [wrapper]


def _paths_of(obj: dict[str, Any]) -> list[tuple[Any, ...]]:
    if obj["apiVersion"] == "v1":
        return NODE_PATHS  # a Kubernetes Node
    return PEER_PATHS if obj["kind"] == "BGPPeer" else OTHER_PATHS


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _kind(obj: dict[str, Any]) -> str:
    return str(obj["kind"])


def _json_safe(docs: list[Any]) -> bool:
    try:
        json.dumps(docs, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


@FUZZ
@given(documents())
def test_decoded_documents(docs: list[Any]) -> None:
    _through_documents(docs)


@FUZZ
@given(documents(), st.sampled_from(["yaml", "json"]), st.data())
def test_serialized_documents(
    fuzz_dir: Path, docs: list[Any], fmt: str, data: st.DataObject
) -> None:
    """The same documents through the file readers, whole or truncated."""
    if fmt == "json" and len(docs) == 1 and _json_safe(docs):
        text = json.dumps(docs[0], indent=4)
    else:
        text = yaml.safe_dump_all(docs)
    if data.draw(st.booleans(), label="truncate"):
        text = text[: data.draw(st.integers(min_value=0, max_value=len(text)), label="cut")]
    read_through_everything(_write(fuzz_dir, text.encode("utf-8")))


@FUZZ
@given(st.one_of(st.binary(max_size=512), st.text(max_size=256).map(str.encode)))
def test_random_files(fuzz_dir: Path, data: bytes) -> None:
    read_through_everything(_write(fuzz_dir, data))


YAML_PIECES = st.sampled_from(
    ["[", "]", "{", "}", "- ", "? ", ": ", ", ", "&a ", "*a", "!!str ", "'", '"', "\n", "  ",
     "#", "---\n", "a", "1", "null", "|\n", ">\n", "\t", "%YAML 1.1\n", "<<: "]
)  # fmt: skip


@FUZZ
@given(st.lists(YAML_PIECES, max_size=60).map("".join))
def test_yaml_syntax_soup(fuzz_dir: Path, text: str) -> None:
    read_through_everything(_write(fuzz_dir, text.encode("utf-8")))


LABELS = st.dictionaries(
    st.sampled_from(["a", "b/c.d", "x"]), st.sampled_from(["", "x", "y", "'"]), max_size=3
)


@FUZZ
@given(SELECTOR_TEXT, st.lists(LABELS, max_size=3))
def test_selectors(text: str, label_sets: list[dict[str, str]]) -> None:
    ok, sel = outcome(parse_selector, text)
    if not ok:
        return
    assert isinstance(sel, Selector)
    for labels in label_sets:
        assert isinstance(sel.matches(labels), bool)
    if expr_depth(sel.expr) <= 16:  # to_text adds brackets: far from the nesting limit
        assert parse_selector(to_text(sel.expr)).expr == sel.expr


@FUZZ
@given(
    st.sampled_from(["(", "!", "!(", "(!", "((a == 'x' || "]),
    st.integers(min_value=limits.MAX_SELECTOR_NESTING - 2, max_value=3000),
)
def test_deep_selectors(opener: str, depth: int) -> None:
    text = opener * depth + "all()" + ")" * (opener.count("(") * depth)
    ok, sel = outcome(parse_selector, text)
    if ok:
        assert sel.matches({}) in (True, False)


def _spec_value(name: str) -> st.SearchStrategy[Any]:
    field = SPEC_FIELDS[name]
    good: list[Any] = []
    if field.kind == "integer":
        low = field.minimum or 0
        high = field.maximum if field.maximum is not None else 2**40
        good = [low - 1, low, high, high + 1, 10**30, -(2**63)]
    elif field.kind == "enum":
        good = [*field.choices, "", "AUTO"]
    elif field.kind == "boolean":
        good = [True, False, "true", 0]
    elif field.kind == "strings":
        good = [["a", "b=c"], [], ["=" * 400], [1]]
    elif field.kind == "object":
        good = [
            {"enabled": True, "coolDown": "99999999999999h", "settle": "1s"},
            {"namespace": "x" * 70, "name": ""},
            {"bogus": 1},
        ]
    elif field.kind == "password":
        good = [{"secretKeyRef": {"name": "s", "key": "k"}}, {"secretKeyRef": None}, "plain"]
    return (
        st.one_of(st.sampled_from(good), ODD_STRINGS, VALUES)
        if good
        else st.one_of(ODD_STRINGS, VALUES)
    )


@st.composite
def operator_specs(draw: st.DrawFn) -> Any:
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(VALUES)  # not even a mapping
    names = draw(st.lists(st.sampled_from(sorted(SPEC_FIELDS)), max_size=5, unique=True))
    spec: dict[Any, Any] = {name: draw(_spec_value(name)) for name in names}
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        spec[draw(KEYS)] = draw(VALUES)  # an unknown field
    return spec


ENVS = st.dictionaries(
    st.sampled_from(sorted(ENV_VARS)), st.one_of(ODD_STRINGS, st.text(max_size=20)), max_size=4
)


@FUZZ
@given(operator_specs(), ENVS)
def test_operator_specs(spec: Any, env: dict[str, str]) -> None:
    outcome(settings_from_spec, spec, env=env, api_group="crd.projectcalico.org/v1")


# ---------------------------------------------------------------------------
# What the fuzzing found outside the readers (issue 14): minimal inputs, kept as
# plain tests so that they fail by name until the parser in question is fixed.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"\n": None},  # spec.<name>: unknown field
        {"bogus\nfield": 1},
        {"typha": {"x\ny": 1}},  # spec.typha.<name>: unknown field
    ],
    ids=["newline-field", "field-with-newline", "typha-field-with-newline"],
)
def test_found_opconfig_unknown_field_message_is_one_line(spec: dict[str, Any]) -> None:
    ok, _ = outcome(settings_from_spec, spec, env={}, api_group="crd.projectcalico.org/v1")
    assert not ok


@pytest.mark.parametrize(
    "docs",
    [
        [{"kind": "\n"}],  # "<kind> without a name"
        [{"kind": "BGPPeer", "apiVersion": "crd.projectcalico.org/v1", "metadata": {"name": "p\nq"},
          "spec": {"peerSelector": "(("}}],
        [{"kind": "Node", "apiVersion": "v1", "metadata": {"name": "a\nb", "labels": {"x": 1}}}],
    ],
    ids=["kind-newline-without-name", "peer-name-newline", "node-name-newline"],
)  # fmt: skip
def test_found_object_names_in_messages_are_one_line(docs: list[Any]) -> None:
    _through_documents(docs)


@pytest.mark.parametrize(
    "docs",
    [
        [{"kind": "X\nY", "apiVersion": "v1", "metadata": {"name": "a"}}],
        [{"kind": "List", "items": [{"kind": "X\nY", "metadata": {"name": "a"}}]}],
    ],
    ids=["document", "list-item"],
)
def test_found_notes_on_skipped_kinds_are_one_line(docs: list[Any]) -> None:
    _through_documents(docs)


def test_found_deep_etcd_value_is_an_input_error() -> None:
    # The etcd adapters decode Calico's documents with json.loads: a value nested
    # 100,000 levels deep raised RecursionError (calico_rr.core.formats.etcd).
    from calico_rr.core.formats.etcd import decode_document

    value = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
    ok, _ = outcome(decode_document, "/calico/resources/v3/projectcalico.org/bgppeers/p", value, 1)
    assert not ok
