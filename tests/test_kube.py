"""Tests for calico_rr.core.formats.kube: Kubernetes Node objects <-> model.Node."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico_rr.core.formats.kube import node_from_k8s, node_to_k8s, nodes_from_documents
from calico_rr.core.formats.scalars import format_timestamp, parse_ipv4, parse_timestamp
from calico_rr.errors import InputError
from calico_rr.model import ANN_IPV4, Node, Taint

T0 = 1704164645.0  # 2024-01-02T03:04:05Z


def k8s_node(name: str = "n1", **over: Any) -> dict[str, Any]:
    """A realistic Node object (as kubectl writes it) for ``name``."""
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": "0c5d2b0e-1111-2222-3333-444455556666",
            "resourceVersion": "12345",
            "creationTimestamp": "2024-01-02T03:04:05Z",
            "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "z1"},
            "annotations": {ANN_IPV4: "10.0.0.5/24", "node.alpha.kubernetes.io/ttl": "0"},
            "managedFields": [{"manager": "kubelet", "operation": "Update"}],
        },
        "spec": {
            "podCIDR": "192.168.0.0/24",
            "taints": [
                {"key": "dedicated", "value": "infra", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
            ],
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.99"},
                {"type": "Hostname", "address": name},
            ],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                {"type": "DiskPressure", "status": "False"},
            ],
        },
    }
    obj.update(over)
    return obj


# ---------------------------------------------------------------------------
# node_from_k8s: valid input
# ---------------------------------------------------------------------------


def test_reads_every_field() -> None:
    obj = k8s_node()
    node = node_from_k8s(obj)
    assert node.name == "n1"
    assert node.ip == "10.0.0.5"  # the Calico annotation wins over InternalIP
    assert node.labels == {"kubernetes.io/hostname": "n1", "topology.kubernetes.io/zone": "z1"}
    assert node.annotations[ANN_IPV4] == "10.0.0.5/24"
    assert node.conditions == {"Ready": "True", "DiskPressure": "False"}
    assert node.ready
    assert node.taints == (
        Taint("dedicated", "NoSchedule", "infra"),
        Taint("node.kubernetes.io/unreachable", "NoExecute", ""),
    )
    assert node.unschedulable is False
    assert node.deleting is False
    assert node.created == T0
    assert node.raw is obj


def test_minimal_node_defaults() -> None:
    node = node_from_k8s({"metadata": {"name": "bare"}})
    assert node == Node(name="bare", ip=None)
    assert node.created == 0.0
    assert not node.ready


def test_null_sections_are_empty() -> None:
    # Kubernetes omits empty fields; hand-written YAML may leave them null instead.
    obj = {
        "kind": "Node",
        "metadata": {"name": "n", "labels": None, "annotations": None},
        "spec": None,
        "status": {"conditions": None, "addresses": None},
    }
    node = node_from_k8s(obj)
    assert (node.labels, node.annotations, node.conditions, node.taints) == ({}, {}, {}, ())


def test_plain_address_annotation() -> None:
    obj = k8s_node()
    obj["metadata"]["annotations"][ANN_IPV4] = "10.1.2.3"
    assert node_from_k8s(obj).ip == "10.1.2.3"


def test_internal_ip_fallback_skips_ipv6_and_other_types() -> None:
    obj = k8s_node()
    del obj["metadata"]["annotations"][ANN_IPV4]
    obj["status"]["addresses"] = [
        {"type": "Hostname", "address": "n1"},
        {"type": "ExternalIP", "address": "203.0.113.9"},
        {"type": "InternalIP", "address": "fd00::5"},
        {"type": "InternalIP", "address": "10.0.0.7"},
        {"type": "InternalIP", "address": "10.0.0.8"},
    ]
    assert node_from_k8s(obj).ip == "10.0.0.7"


def test_no_address_gives_none() -> None:
    obj = k8s_node()
    del obj["metadata"]["annotations"][ANN_IPV4]
    obj["status"]["addresses"] = [{"type": "InternalIP", "address": "fd00::5"}]
    assert node_from_k8s(obj).ip is None


def test_unschedulable_and_deleting() -> None:
    obj = k8s_node()
    obj["spec"]["unschedulable"] = True
    obj["metadata"]["deletionTimestamp"] = "2024-05-01T00:00:00Z"
    node = node_from_k8s(obj)
    assert node.unschedulable is True
    assert node.deleting is True


def test_unquoted_yaml_timestamp_accepted() -> None:
    # yaml.safe_load decodes an unquoted timestamp to a datetime.
    obj = k8s_node()
    obj["metadata"]["creationTimestamp"] = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert node_from_k8s(obj).created == T0
    obj["metadata"]["creationTimestamp"] = datetime(2024, 1, 2, 3, 4, 5)  # naive = UTC
    assert node_from_k8s(obj).created == T0


# ---------------------------------------------------------------------------
# node_from_k8s: every malformed field names the object and the field
# ---------------------------------------------------------------------------


def _keys(path: str | tuple[str, ...]) -> list[str]:
    # "spec.taints.0.key", or a tuple when a key contains dots (annotation names).
    return path.split(".") if isinstance(path, str) else list(path)


def _set(path: str | tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    keys = _keys(path)

    def apply(obj: dict[str, Any]) -> None:
        target = obj
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value

    return apply


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = _keys(path)

    def apply(obj: dict[str, Any]) -> None:
        target: Any = obj
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        del target[last]

    return apply


MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("labels a list", _set("metadata.labels", ["a", "b"]), "metadata.labels"),
    ("labels a string", _set("metadata.labels", "a=b"), "metadata.labels"),
    ("label value bool", _set("metadata.labels.flag", True), 'metadata.labels["flag"]'),
    ("label value int", _set("metadata.labels.n", 3), 'metadata.labels["n"]'),
    ("label value null", _set("metadata.labels.n", None), 'metadata.labels["n"]'),
    ("label key int", _set("metadata.labels", {1: "x"}), "metadata.labels"),
    ("annotations a list", _set("metadata.annotations", []), "metadata.annotations"),
    ("annotation value int", _set("metadata.annotations.a", 1), 'metadata.annotations["a"]'),
    (
        "ipv4 annotation garbage",
        _set(("metadata", "annotations", ANN_IPV4), "not-an-ip"),
        f'metadata.annotations["{ANN_IPV4}"]',
    ),
    (
        "ipv4 annotation prefix 33",
        _set(("metadata", "annotations", ANN_IPV4), "10.0.0.5/33"),
        f'metadata.annotations["{ANN_IPV4}"]',
    ),
    (
        "ipv4 annotation netmask",
        _set(("metadata", "annotations", ANN_IPV4), "10.0.0.5/255.255.255.0"),
        f'metadata.annotations["{ANN_IPV4}"]',
    ),
    (
        "ipv4 annotation ipv6",
        _set(("metadata", "annotations", ANN_IPV4), "fd00::1/64"),
        f'metadata.annotations["{ANN_IPV4}"]',
    ),
    (
        "creation not RFC 3339",
        _set("metadata.creationTimestamp", "yesterday"),
        "metadata.creationTimestamp",
    ),
    (
        "creation without offset",
        _set("metadata.creationTimestamp", "2024-01-02T03:04:05"),
        "metadata.creationTimestamp",
    ),
    (
        "creation bad day",
        _set("metadata.creationTimestamp", "2024-02-30T00:00:00Z"),
        "metadata.creationTimestamp",
    ),
    (
        "creation a number",
        _set("metadata.creationTimestamp", 1704067200),
        "metadata.creationTimestamp",
    ),
    ("deletion garbage", _set("metadata.deletionTimestamp", "soon"), "metadata.deletionTimestamp"),
    ("spec a list", _set("spec", []), "spec"),
    ("unschedulable a string", _set("spec.unschedulable", "true"), "spec.unschedulable"),
    ("unschedulable an int", _set("spec.unschedulable", 1), "spec.unschedulable"),
    ("taints a map", _set("spec.taints", {"key": "a"}), "spec.taints"),
    ("taint a string", _set("spec.taints.0", "a:NoSchedule"), "spec.taints[0]"),
    ("taint without key", _delete("spec.taints.0.key"), "spec.taints[0].key"),
    ("taint empty key", _set("spec.taints.1.key", ""), "spec.taints[1].key"),
    ("taint without effect", _delete("spec.taints.1.effect"), "spec.taints[1].effect"),
    ("taint value int", _set("spec.taints.0.value", 5), "spec.taints[0].value"),
    ("status a string", _set("status", "ok"), "status"),
    ("conditions a map", _set("status.conditions", {"Ready": "True"}), "status.conditions"),
    ("condition a string", _set("status.conditions.1", "Ready"), "status.conditions[1]"),
    ("condition without type", _delete("status.conditions.0.type"), "status.conditions[0].type"),
    (
        "condition status bool",
        _set("status.conditions.0.status", True),
        "status.conditions[0].status",
    ),
    (
        "condition twice",
        _set("status.conditions.1", {"type": "Ready", "status": "False"}),
        "status.conditions[1].type",
    ),
    ("addresses a map", _set("status.addresses", {}), "status.addresses"),
    ("address a string", _set("status.addresses.0", "10.0.0.1"), "status.addresses[0]"),
    ("address without type", _delete("status.addresses.1.type"), "status.addresses[1].type"),
    (
        "internal ip garbage",
        _set("status.addresses.0", {"type": "InternalIP", "address": "10.0.0.300"}),
        "status.addresses[0].address",
    ),
    ("kind not Node", _set("kind", "Pod"), "kind"),
]


@pytest.mark.parametrize(("case", "mutate", "field"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_field_names_object_and_field(
    case: str, mutate: Callable[[dict[str, Any]], None], field: str
) -> None:
    obj = k8s_node("bad-node")
    mutate(obj)
    with pytest.raises(InputError) as info:
        node_from_k8s(obj, where="item 1 of f.yaml")
    err = info.value
    expected_obj = "item 1 of f.yaml" if field == "kind" else "Node bad-node"
    assert err.obj == expected_obj, case
    assert err.field == field, case
    assert expected_obj in str(err) and field in str(err)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"kind": "Node"}, "metadata"),
        ({"metadata": []}, "metadata"),
        ({"metadata": {}}, "metadata.name"),
        ({"metadata": {"name": ""}}, "metadata.name"),
        ({"metadata": {"name": 42}}, "metadata.name"),
    ],
)
def test_missing_name_uses_position(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        node_from_k8s(obj, where="item 3 of nodes.yaml")
    assert info.value.obj == "item 3 of nodes.yaml"
    assert info.value.field == field


def test_not_a_map() -> None:
    with pytest.raises(InputError) as info:
        node_from_k8s(["a"], where="item 2 of x")  # type: ignore[arg-type]
    assert info.value.obj == "item 2 of x"
    assert "must be a map" in str(info.value)


def test_bool_label_error_hints_at_quoting() -> None:
    obj = k8s_node()
    obj["metadata"]["labels"]["enabled"] = True  # `enabled: yes` unquoted in YAML
    with pytest.raises(InputError, match="quote it"):
        node_from_k8s(obj)


# ---------------------------------------------------------------------------
# nodes_from_documents
# ---------------------------------------------------------------------------


def test_nodelist_sorted_by_name() -> None:
    doc = {"kind": "NodeList", "items": [k8s_node("c"), k8s_node("a"), k8s_node("b")]}
    nodes, notes = nodes_from_documents([doc], where="f.yaml")
    assert [n.name for n in nodes] == ["a", "b", "c"]
    assert notes == []


def test_generic_list_skips_other_kinds_with_notes() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"}}
    doc = {"kind": "List", "items": [k8s_node("a"), pod, k8s_node("b")]}
    nodes, notes = nodes_from_documents([doc], where="f.yaml")
    assert [n.name for n in nodes] == ["a", "b"]
    assert len(notes) == 1
    assert "item 2 of f.yaml" in notes[0] and "Pod" in notes[0] and "web-1" in notes[0]


def test_generic_list_item_without_kind_is_error() -> None:
    doc = {"kind": "List", "items": [{"metadata": {"name": "x"}}]}
    with pytest.raises(InputError) as info:
        nodes_from_documents([doc], where="f.yaml")
    assert info.value.obj == "item 1 of f.yaml"
    assert info.value.field == "kind"


def test_nodelist_with_non_node_item_is_error() -> None:
    doc = {"kind": "NodeList", "items": [k8s_node("a"), {"kind": "Pod", "metadata": {}}]}
    with pytest.raises(InputError) as info:
        nodes_from_documents([doc], where="f.yaml")
    assert info.value.obj == "item 2 of f.yaml"
    assert info.value.field == "kind"


def test_single_nodes_and_empty_documents() -> None:
    nodes, notes = nodes_from_documents(
        [None, k8s_node("b"), None, k8s_node("a")], where="multi.yaml"
    )
    assert [n.name for n in nodes] == ["a", "b"]
    assert notes == []


def test_empty_input() -> None:
    assert nodes_from_documents([], where="x") == ([], [])
    assert nodes_from_documents([{"kind": "NodeList", "items": None}], where="x") == ([], [])


def test_item_position_in_later_document() -> None:
    docs = [k8s_node("a"), {"kind": "NodeList", "items": [{"kind": "Node", "metadata": {}}]}]
    with pytest.raises(InputError) as info:
        nodes_from_documents(docs, where="f.yaml")
    assert info.value.obj == "item 1 of document 2 of f.yaml"
    assert info.value.field == "metadata.name"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"metadata": {"name": "p"}}, "kind"),
        ({"kind": "NodeList", "items": {"a": 1}}, "items"),
        ("just a string", None),
        ([k8s_node()], None),
    ],
)
def test_unexpected_documents(doc: Any, field: str | None) -> None:
    with pytest.raises(InputError) as info:
        nodes_from_documents([None, doc], where="f.yaml")
    assert info.value.obj == "document 2 of f.yaml"
    assert info.value.field == field


def test_duplicate_names() -> None:
    docs = [{"kind": "NodeList", "items": [k8s_node("a"), k8s_node("b")]}, k8s_node("a")]
    with pytest.raises(InputError) as info:
        nodes_from_documents(docs, where="f.yaml")
    assert info.value.obj == "Node a"
    assert info.value.field == "metadata.name"
    assert "item 1 of f.yaml" in str(info.value) and "document 2 of f.yaml" in str(info.value)


def test_accepts_a_generator() -> None:
    nodes, _ = nodes_from_documents((k8s_node(n) for n in "zyx"), where="gen")
    assert [n.name for n in nodes] == ["x", "y", "z"]


# ---------------------------------------------------------------------------
# node_to_k8s
# ---------------------------------------------------------------------------


def test_raw_copy_drops_server_owned_metadata() -> None:
    obj = k8s_node()
    before = copy.deepcopy(obj)
    out = node_to_k8s(node_from_k8s(obj))
    meta = out["metadata"]
    assert "resourceVersion" not in meta and "uid" not in meta and "managedFields" not in meta
    assert out["spec"] == obj["spec"] and out["status"] == obj["status"]
    assert meta["labels"] == obj["metadata"]["labels"]
    # A deep copy: editing the output leaves the input alone.
    out["spec"]["taints"].append({"key": "x", "effect": "NoSchedule"})
    out["metadata"]["labels"]["new"] = "1"
    out["status"]["conditions"][0]["status"] = "False"
    assert obj == before


def test_label_and_annotation_edits_on_raw() -> None:
    node = node_from_k8s(k8s_node())
    out = node_to_k8s(
        node,
        labels={"calico-rr.io/route-reflector": "true", "topology.kubernetes.io/zone": "z2"},
        annotations={"projectcalico.org/RouteReflectorClusterID": "224.0.0.1"},
        remove_labels=["kubernetes.io/hostname", "absent"],
        remove_annotations=["node.alpha.kubernetes.io/ttl"],
    )
    assert out["metadata"]["labels"] == {
        "calico-rr.io/route-reflector": "true",
        "topology.kubernetes.io/zone": "z2",
    }
    assert out["metadata"]["annotations"] == {
        ANN_IPV4: "10.0.0.5/24",
        "projectcalico.org/RouteReflectorClusterID": "224.0.0.1",
    }
    assert node.labels["kubernetes.io/hostname"] == "n1"  # node untouched


def test_additions_win_over_removals_and_create_missing_maps() -> None:
    node = node_from_k8s({"kind": "Node", "metadata": {"name": "n"}})
    out = node_to_k8s(node, labels={"a": "1"}, remove_labels=["a"], annotations={"b": "2"})
    assert out["metadata"]["labels"] == {"a": "1"}
    assert out["metadata"]["annotations"] == {"b": "2"}
    assert "labels" not in node_to_k8s(node, remove_labels=["a"])["metadata"]


def test_synthetic_node_complete_object() -> None:
    node = Node(
        name="s1",
        ip="10.0.3.4",
        labels={"zone": "a"},
        conditions={"Ready": "False"},
        taints=(Taint("t", "NoExecute"), Taint("u", "NoSchedule", "v")),
        unschedulable=True,
        deleting=True,
        created=T0,
    )
    out = node_to_k8s(node)
    assert out["apiVersion"] == "v1" and out["kind"] == "Node"
    meta = out["metadata"]
    assert meta["name"] == "s1"
    assert meta["labels"] == {"zone": "a"}
    assert meta["annotations"] == {ANN_IPV4: "10.0.3.4/24"}
    assert meta["creationTimestamp"] == "2024-01-02T03:04:05Z"
    assert "deletionTimestamp" in meta
    assert out["spec"] == {
        "unschedulable": True,
        "taints": [
            {"key": "t", "effect": "NoExecute"},
            {"key": "u", "value": "v", "effect": "NoSchedule"},
        ],
    }
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "False"}]
    assert {"type": "InternalIP", "address": "10.0.3.4"} in out["status"]["addresses"]
    # The result shares nothing with the node.
    meta["labels"]["x"] = "y"
    assert node.labels == {"zone": "a"}


def test_synthetic_keeps_existing_ipv4_annotation() -> None:
    node = Node(name="s", ip="10.0.0.1", annotations={ANN_IPV4: "10.0.0.1/16"})
    assert node_to_k8s(node)["metadata"]["annotations"] == {ANN_IPV4: "10.0.0.1/16"}


def test_synthetic_without_ip_has_no_address() -> None:
    out = node_to_k8s(Node(name="s", ip=None))
    assert ANN_IPV4 not in out["metadata"]["annotations"]
    assert "addresses" not in out["status"]
    assert "deletionTimestamp" not in out["metadata"]
    assert out["spec"] == {}


def test_synthetic_created_out_of_range() -> None:
    with pytest.raises(InputError) as info:
        node_to_k8s(Node(name="s", ip=None, created=float("inf")))
    assert info.value.obj == "Node s"


# ---------------------------------------------------------------------------
# Round trip (hypothesis)
# ---------------------------------------------------------------------------

_text = st.text(min_size=1, max_size=12)
_ips = st.ip_addresses(v=4).map(str)

nodes_strategy = st.builds(
    Node,
    name=_text,
    ip=st.none() | _ips,
    labels=st.dictionaries(_text, st.text(max_size=8), max_size=4),
    annotations=st.dictionaries(_text.filter(lambda k: k != ANN_IPV4), st.text(), max_size=4),
    conditions=st.dictionaries(_text, _text, max_size=5),
    taints=st.lists(
        st.builds(Taint, key=_text, effect=_text, value=st.text(max_size=6)), max_size=3
    ).map(tuple),
    unschedulable=st.booleans(),
    deleting=st.booleans(),
    # Kubernetes timestamps are whole seconds; years 1-9999.
    created=st.integers(-62135596800, 253402300799).map(float),
)


def _expected(node: Node) -> Node:
    if node.ip is None:
        return node
    return dataclasses.replace(node, annotations={**node.annotations, ANN_IPV4: f"{node.ip}/24"})


@given(nodes_strategy)
def test_round_trip_synthetic(node: Node) -> None:
    back = node_from_k8s(node_to_k8s(node))
    assert back == _expected(node)
    assert back.raw is not None


@given(nodes_strategy)
def test_round_trip_through_raw(node: Node) -> None:
    first = node_from_k8s(node_to_k8s(node))
    again = node_from_k8s(node_to_k8s(first))
    assert again == first


@given(st.floats(-62135596800, 253402300799, allow_nan=False).map(lambda f: round(f, 6)))
def test_timestamp_round_trip_to_the_microsecond(seconds: float) -> None:
    assert abs(parse_timestamp(format_timestamp(seconds)) - seconds) < 1e-4


@given(st.datetimes(timezones=st.just(UTC)))
def test_format_timestamp_matches_datetime(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    # isoformat rather than strftime: glibc strftime does not pad years below 1000.
    assert format_timestamp(moment.timestamp()) == moment.isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2024-01-02T03:04:05Z", T0),
        ("2024-01-02t03:04:05z", T0),
        ("2024-01-02T05:04:05+02:00", T0),
        ("2024-01-02T01:04:05-02:00", T0),
        ("2024-01-02T03:04:05.250Z", T0 + 0.25),
        ("1970-01-01T00:00:00Z", 0.0),
    ],
)
def test_parse_timestamp(text: str, seconds: float) -> None:
    assert parse_timestamp(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-01-02",
        "2024-01-02 03:04:05Z",
        "2024-01-02T03:04:05",
        "2024-13-01T00:00:00Z",
        "2024-01-02T03:04:60Z",
        "20240102T030405Z",
        "2024-01-02T03:04:05+0200",
    ],
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_format_timestamp_fraction() -> None:
    assert format_timestamp(T0 + 0.5) == "2024-01-02T03:04:05.5Z"
    assert format_timestamp(-1.0) == "1969-12-31T23:59:59Z"
    with pytest.raises(ValueError):
        format_timestamp(float("nan"))


@pytest.mark.parametrize(
    ("text", "ip"),
    [
        ("10.0.0.5", "10.0.0.5"),
        ("10.0.0.5/24", "10.0.0.5"),
        ("0.0.0.0/0", "0.0.0.0"),
        ("255.255.255.255/32", "255.255.255.255"),
        ("10.0.0.5/33", None),
        ("10.0.0.5/", None),
        ("10.0.0.05", None),
        ("10.0.0.256", None),
        ("10.0.0", None),
        ("10.0.0.5.6", None),
        ("1０.0.0.5", None),  # fullwidth digit  # noqa: RUF001
        ("fd00::1", None),
        ("", None),
    ],
)
def test_parse_ipv4(text: str, ip: str | None) -> None:
    assert parse_ipv4(text) == ip


@given(_ips, st.integers(0, 32))
def test_parse_ipv4_accepts_every_address(ip: str, prefix: int) -> None:
    assert parse_ipv4(ip) == ip
    assert parse_ipv4(f"{ip}/{prefix}") == ip


def test_other_kinds_in_a_stream_are_skipped_with_a_note() -> None:
    """`render --include-nodes` output mixes Nodes with Calico objects."""
    docs = [k8s_node(), {"apiVersion": "x/v1", "kind": "BGPPeer", "metadata": {"name": "p"}}]
    nodes, notes = nodes_from_documents(docs, where="s.yaml")
    assert len(nodes) == 1
    assert notes == ["document 2 of s.yaml: skipped BGPPeer p"]
