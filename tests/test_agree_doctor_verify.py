"""`verify` and `doctor` read the same input the same way (issue 14, items 5 and 6).

Both go through ``core.bgp.resources`` (``iter_objects``, ``resolve_api_groups``,
``parse_objects``): the same objects accepted, the same object read from a dump of
both API groups, the same error naming the same place for a bad one; the node reader
of ``plan``/``render`` (``core.formats.kube.nodes_from_documents``) counts places the same
way.  And no input makes any of them raise anything but an InputError.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from calico_rr.cli import app
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.doctor.checks import diagnose
from calico_rr.core.doctor.inventory import inventory_from_documents
from calico_rr.core.formats.fields import position
from calico_rr.core.formats.kube import nodes_from_documents
from calico_rr.errors import CalicoRRError, InputError
from calico_rr.model import ANN_ASN, ANN_CLUSTER_ID, ANN_IPV4

V1 = "crd.projectcalico.org/v1"
V3 = "projectcalico.org/v3"
runner = CliRunner()


def k8s_node(name: str, ip: str = "10.0.0.1/24", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {ANN_IPV4: ip}},
    }


def calico(kind: str, name: str, group: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": group, "kind": kind, "metadata": {"name": name}, "spec": spec}


def as_list(*items: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(items)}


def verify_read(docs: list[Any]) -> Any:
    return parse_resources(docs, where="f.yaml")


def doctor_read(docs: list[Any]) -> Any:
    return inventory_from_documents(docs, where="f.yaml")


def error_of(read: Callable[[list[Any]], Any], docs: list[Any]) -> InputError:
    with pytest.raises(InputError) as info:
        read(copy.deepcopy(docs))
    return info.value


# -- one object in both API groups -------------------------------------------------------


def _objects(group: str, mesh: bool = False, selector: str = "has(rr)") -> list[dict[str, Any]]:
    return [
        calico("BGPConfiguration", "default", group, nodeToNodeMeshEnabled=mesh),
        calico("BGPPeer", "to-rr", group, nodeSelector="!has(rr)", peerSelector=selector),
        calico("BGPPeer", "rr-mesh", group, nodeSelector="has(rr)", peerSelector="has(rr)"),
    ]


def _nodes() -> list[dict[str, Any]]:
    nodes = [k8s_node(f"n{i}", f"10.0.0.{i + 1}/24") for i in range(4)]
    nodes[0]["metadata"]["labels"]["rr"] = "y"
    nodes[0]["metadata"]["annotations"][ANN_CLUSTER_ID] = "244.0.0.1"
    return nodes


def test_a_dump_of_both_groups_is_one_set_of_objects_for_verify_and_doctor() -> None:
    # What `kubectl get bgppeers.crd.projectcalico.org,bgppeers.projectcalico.org,...`
    # prints with calico-apiserver installed: every Calico object twice.
    docs = [as_list(*_nodes(), *_objects(V3), *_objects(V1))]
    parsed = verify_read(docs)
    inventory = doctor_read(docs)
    assert parsed.state == inventory.state
    assert [p.name for p in parsed.state.peers] == ["rr-mesh", "to-rr"]
    assert parsed.state.config.mesh_enabled is False
    notes = [n for n in parsed.notes if "both API groups" in n]
    assert len(notes) == 3 and all("same spec" in n for n in notes)
    assert notes == [n for n in inventory.notes if "both API groups" in n]
    # The same dump without the v3 copies reads the same.
    assert verify_read([as_list(*_nodes(), *_objects(V1))]).state == parsed.state


def test_differing_copies_are_read_from_crd_projectcalico_org_by_both() -> None:
    docs = [
        as_list(*_nodes(), *_objects(V3, mesh=True, selector="all()")),
        as_list(*_objects(V1)),
    ]
    parsed = verify_read(docs)
    inventory = doctor_read(docs)
    assert parsed.state == inventory.state
    assert parsed.state.config.mesh_enabled is False
    assert {p.name: p.peer_selector for p in parsed.state.peers}["to-rr"] == "has(rr)"
    differ = [n for n in parsed.notes if "specs differ" in n]
    assert len(differ) == 2  # BGPConfiguration default and BGPPeer to-rr
    assert any(
        "BGPPeer to-rr is in both API groups (crd.projectcalico.org/v1 at item 2 of document 2 "
        "of f.yaml, projectcalico.org/v3 at item 6 of f.yaml)" in n
        for n in differ
    )
    assert differ == [n for n in inventory.notes if "specs differ" in n]


@pytest.mark.parametrize("group", [V1, V3])
def test_a_true_duplicate_is_the_same_error_in_both(group: str) -> None:
    peer = calico("BGPPeer", "p", group, peerIP="192.0.2.1", asNumber=65001)
    docs = [as_list(*_nodes(), peer), None, peer]
    errors = [error_of(read, docs) for read in (verify_read, doctor_read)]
    assert str(errors[0]) == str(errors[1])
    assert (errors[0].obj, errors[0].field) == ("BGPPeer p", "metadata.name")
    assert "first seen as item 5 of f.yaml, again as document 3 of f.yaml" in str(errors[0])


# -- the same place named the same way ----------------------------------------------------

# (documents, the place every reader names, the field)
PLACES: list[tuple[str, list[Any], str, str | None]] = [
    ("document not a map", [None, as_list(k8s_node("a")), "text"], position("f.yaml", 3), None),
    ("list item not a map", [as_list(k8s_node("a"), 7)], "item 2 of f.yaml", None),
    (
        "list item without kind",
        [as_list(k8s_node("a"), k8s_node("b"), {"metadata": {"name": "c"}})],
        "item 3 of f.yaml",
        "kind",
    ),
    (
        "item of a later document",
        [k8s_node("a"), {"apiVersion": "v1", "kind": "NodeList", "items": [{"metadata": {}}]}],
        "item 1 of document 2 of f.yaml",
        "metadata.name",
    ),
    (
        "items not a list",
        [k8s_node("a"), {"apiVersion": "v1", "kind": "NodeList", "items": {"a": 1}}],
        "document 2 of f.yaml",
        "items",
    ),
    (
        "a label that is not a string",
        [as_list({**k8s_node("a"), "metadata": {"name": "a", "labels": {"x": True}}})],
        "Node a",
        'metadata.labels["x"]',
    ),
]


@pytest.mark.parametrize(
    ("docs", "place", "field"), [p[1:] for p in PLACES], ids=[p[0] for p in PLACES]
)
def test_every_reader_names_the_same_place(docs: list[Any], place: str, field: str | None) -> None:
    verify = error_of(verify_read, docs)
    doctor = error_of(doctor_read, docs)
    assert str(verify) == str(doctor)
    assert (verify.obj, verify.field) == (place, field)
    with pytest.raises(InputError) as nodes:
        nodes_from_documents(copy.deepcopy(docs), where="f.yaml")
    # `plan`'s node reader has its own words ("must be a map"), never its own count.
    assert (nodes.value.obj, nodes.value.field) == (place, field)


def test_a_duplicate_node_names_both_places_in_every_reader() -> None:
    docs = [as_list(k8s_node("x"), k8s_node("a")), None, k8s_node("a")]
    texts = [
        str(error_of(verify_read, docs)),
        str(error_of(doctor_read, docs)),
        str(error_of(lambda d: nodes_from_documents(d, where="f.yaml"), docs)),
    ]
    for text in texts:
        assert "first seen as item 2 of f.yaml, again as document 3 of f.yaml" in text


def test_verify_and_doctor_print_the_same_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "dump.yaml"
    items = [k8s_node("a"), calico("BGPPeer", "p", V1, peerIP="192.0.2.1"), {"kind": "Node"}]
    bad.write_text(yaml.safe_dump(as_list(*items)))
    lines = []
    for command in ("verify", "doctor"):
        result = runner.invoke(app, [command, "--resources", str(bad)])
        assert result.exit_code == 2, result.output
        lines.append(result.stderr.strip())
    assert lines[0] == lines[1]
    assert f"item 3 of {bad} field metadata.name" in lines[0]


# -- nothing but InputError, whatever the input ------------------------------------------


def _template() -> list[Any]:
    """A dump touching every field the three readers look at."""
    node = k8s_node("a")
    node["metadata"]["annotations"] |= {ANN_ASN: "65001", ANN_CLUSTER_ID: "1.1.1.1"}
    node["metadata"]["creationTimestamp"] = "2024-01-02T03:04:05Z"
    node["spec"] = {"taints": [{"key": "k", "effect": "NoSchedule"}], "unschedulable": False}
    node["status"] = {
        "conditions": [{"type": "Ready", "status": "True"}],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
    }
    calico_node = calico("Node", "b", V3, bgp={"ipv4Address": "10.0.0.2/24", "asNumber": 65001})
    calico_node["metadata"]["labels"] = {"zone": "z2"}
    secret = {"secretKeyRef": {"name": "s", "key": "k"}}
    items = [
        node,
        calico_node,
        calico(
            "BGPPeer", "p", V1, nodeSelector="!has(rr)", peerSelector="has(rr)", password=secret
        ),
        calico("BGPPeer", "q", V3, node="a", peerIP="[fd00::1]:179", asNumber="1.5"),
        calico("BGPPeer", "p", V3, nodeSelector="!has(rr)", peerSelector="has(rr)"),
        calico("BGPConfiguration", "default", V1, nodeToNodeMeshEnabled=False, asNumber=64512),
        calico("IPPool", "pool", V1, cidr="192.168.0.0/16", ipipMode="Always", natOutgoing=True),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "calico-typha", "namespace": "kube-system"},
            "spec": {"replicas": 3},
        },
    ]
    typed: dict[str, Any] = {
        "apiVersion": V1,
        "kind": "BGPPeerList",
        "items": [{"metadata": {"name": "r"}}],
    }
    typed["items"][0]["spec"] = {"peerIP": "10.9.9.9", "asNumber": 65002}
    return [as_list(*items), typed]


def _deep(levels: int) -> list[Any]:
    out: list[Any] = []
    inner = out
    for _ in range(levels):
        inner.append([])
        inner = inner[0]
    return out


NASTY: list[Any] = [
    None,
    True,
    10**5000,  # str() and repr() of it raise ValueError
    -1,
    1.5,
    float("nan"),
    "",
    "9" * 5000,
    [],
    [1, [2]],
    {},
    {10**5000: "v"},
    {1: 2},
    _deep(3000),  # repr() of it raises RecursionError
    "1.2.3",
    "((((",
]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _replaced(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    root = copy.deepcopy(root)
    target = root
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return root


def _readers() -> list[Callable[[list[Any]], Any]]:
    return [
        verify_read,
        lambda d: diagnose(doctor_read(d)),
        lambda d: nodes_from_documents(d, where="f.yaml"),
    ]


def _assert_no_crash(docs: list[Any]) -> None:
    for read in _readers():
        with contextlib.suppress(CalicoRRError):
            read(docs)


def test_the_template_is_read_by_all() -> None:
    parsed = verify_read(_template())
    assert [p.name for p in parsed.state.peers] == ["p", "q", "r"]
    assert diagnose(doctor_read(_template())) is not None
    assert [n.name for n in nodes_from_documents(_template(), where="f.yaml")[0]] == ["a", "b"]


def test_any_value_anywhere_gives_a_result_or_an_input_error() -> None:
    """Every field of the template replaced by every odd value, and an odd key added to
    every map: InputError (exit 2 with a message) or a result, never another exception."""
    template = _template()
    paths = [p for p in _paths(template) if p]
    assert len(paths) > 100
    for path in paths:
        for value in NASTY:
            _assert_no_crash(_replaced(template, path, value))
        target = template
        for step in path:
            target = target[step]
        if isinstance(target, dict):
            for key in (10**5000, 1, None):
                _assert_no_crash(_replaced(template, (*path, key), "v"))


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("metadata", "annotations", ANN_IPV4), "10.0.0.1/" + "3" * 5000),
        (("metadata", "annotations", ANN_IPV4), "10.0.0.1/" + "0" * 5000 + "24"),
        (("metadata", "annotations", ANN_ASN), "6" * 5000),
        (("metadata", "annotations", ANN_ASN), "1." + "1" * 5000),
        (("metadata", "annotations", ANN_CLUSTER_ID), 10**5000),
        (("metadata", "annotations", ANN_CLUSTER_ID), ["1.1.1.1"]),
        (("metadata", "labels", "x"), 10**5000),
        (("metadata", "name"), 10**5000),
        (("metadata",), ["not", "a", "map"]),
        (("kind",), 10**5000),
        (("apiVersion",), ["v1"]),
        (("apiVersion",), {"group": "v1"}),
    ],
    ids=lambda v: "/".join(v) if isinstance(v, tuple) else type(v).__name__,
)
def test_huge_numbers_and_wrong_types_in_a_node(where: tuple[str, ...], value: Any) -> None:
    docs = [as_list(_replaced(k8s_node("a"), where, value))]
    for read in _readers():
        try:
            read(docs)
        except InputError as exc:
            assert len(str(exc)) < 500  # one readable line, not the value itself


@pytest.mark.parametrize(
    "spec",
    [
        {"peerIP": "10.0.0.9:" + "1" * 5000},
        {"peerIP": "[fd00::1]:" + "1" * 5000},
        {"peerIP": "10.0.0.9", "asNumber": "1" * 5000},
        {"peerIP": "10.0.0.9", "asNumber": 10**5000},
        {"peerSelector": "has(a)", "reversePeering": 10**5000},
        {"peerSelector": "(" * 5000},
        {"peerSelector": "!" * 5000 + "has(a)"},
    ],
    ids=["port", "v6-port", "asn-text", "asn-int", "reverse", "parens", "nots"],
)
def test_huge_values_in_a_bgppeer_are_input_errors(spec: dict[str, Any]) -> None:
    docs = [as_list(k8s_node("a"), calico("BGPPeer", "p", V1, **spec))]
    for read in (verify_read, doctor_read):
        with pytest.raises(InputError) as info:
            read(docs)
        assert info.value.obj == "BGPPeer p" and len(str(info.value)) < 500
