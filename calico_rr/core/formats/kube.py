"""Kubernetes ``Node`` objects <-> :class:`calico_rr.model.Node` (pure).

Input is what ``kubectl get nodes -o yaml`` (or ``-o json``) writes, already decoded
into Python data by an adapter.  Output of :func:`node_to_k8s` is a whole Node object
that ``kubectl apply --server-side`` accepts and that :func:`node_from_k8s` reads back.

Validation is strict on purpose: a planner that silently ignores a malformed taint or
a label list where a map belongs would choose route reflectors from a cluster that
does not exist.  Every error is an :class:`~calico_rr.errors.InputError` naming the
node (or its position in the file when it has no usable name) and the field path.

Field paths use the object's own spelling with 0-based list indices, e.g.
``spec.taints[2].effect`` or ``metadata.labels["zone"]``, so they can be pasted into
``kubectl get -o jsonpath`` style thinking; positions of whole objects in a file are
1-based ("item 3 of nodes.yaml"), as a person counts them.  Positions, maps and
scalars are read with the helpers every document reader shares
(:mod:`~calico_rr.core.formats.fields`, :mod:`~calico_rr.core.formats.scalars`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from calico_rr.core.formats.fields import (
    duplicate,
    flag,
    is_map,
    mapping,
    position,
    string_map,
    type_name,
)
from calico_rr.core.formats.scalars import (
    format_timestamp,
    ipv4_field,
    ipv6_field,
    parse_ipv6,
    timestamp_field,
)
from calico_rr.core.values import cluster_id, is_dotted_quad
from calico_rr.errors import InputError, one_line, safe_repr
from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV4, ANN_IPV6, Node, Taint

_EMPTY: Mapping[str, str] = MappingProxyType({})

#: metadata fields the API server owns; an apply request carrying them would either
#: be rejected (a stale resourceVersion conflicts) or fight the server for them.
_SERVER_OWNED_METADATA = frozenset({"resourceVersion", "uid", "managedFields"})


# ---------------------------------------------------------------------------
# Reading one Node
# ---------------------------------------------------------------------------


def _optional_list(parent: Mapping[str, Any], key: str, obj: str, path: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"must be a list, got {type_name(value)}", obj=obj, field=path)
    return value


def _item_string(
    item: Mapping[str, Any], key: str, obj: str, path: str, *, required: bool = True
) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        what = "missing" if value is None else f"must be a non-empty string, got {safe_repr(value)}"
        raise InputError(what, obj=obj, field=f"{path}.{key}")
    return value


def _string_pair(
    item: object, first: str, second: str, path: str, i: int, obj: str
) -> tuple[str, str]:
    """``item[first]`` and ``item[second]`` of item ``i`` of the list at ``path``
    (``status.conditions``, ``spec.taints``, ...): two required strings."""
    # Fast path first: real nodes carry five or more conditions each, and this
    # runs for every node of a 50,000-node file.
    if type(item) is dict:
        a = item.get(first)
        b = item.get(second)
        if type(a) is str and a and type(b) is str and b:
            return a, b
    at = f"{path}[{i}]"
    if not is_map(item):
        raise InputError(f"must be a map, got {type_name(item)}", obj=obj, field=at)
    return _item_string(item, first, obj, at), _item_string(item, second, obj, at)


def _conditions(status: Mapping[str, Any], obj: str) -> dict[str, str]:
    out: dict[str, str] = {}
    path = "status.conditions"
    for i, item in enumerate(_optional_list(status, "conditions", obj, path)):
        ctype, cstatus = _string_pair(item, "type", "status", path, i, obj)
        if ctype in out:
            # The API server keys conditions by type (patchMergeKey), so a repeat
            # means a hand-edited file; which entry is right cannot be guessed.
            raise InputError(
                f"condition {ctype!r} listed twice", obj=obj, field=f"{path}[{i}].type"
            )
        out[ctype] = cstatus
    return out


def _taints(spec: Mapping[str, Any], obj: str) -> tuple[Taint, ...]:
    out: list[Taint] = []
    for i, item in enumerate(_optional_list(spec, "taints", obj, "spec.taints")):
        key, effect = _string_pair(item, "key", "effect", "spec.taints", i, obj)
        value = _item_string(item, "value", obj, f"spec.taints[{i}]", required=False)
        out.append(Taint(key=key, effect=effect, value=value))
    return tuple(out)


def _internal_ips(status: Mapping[str, Any], obj: str) -> tuple[str | None, str | None]:
    """The first IPv4 and the first IPv6 ``InternalIP`` (dual-stack nodes list both)."""
    found4: str | None = None
    found6: str | None = None
    path = "status.addresses"
    for i, item in enumerate(_optional_list(status, "addresses", obj, path)):
        atype, address = _string_pair(item, "type", "address", path, i, obj)
        if atype != "InternalIP":
            continue
        if is_dotted_quad(address):  # a bare address here, never CIDR
            found4 = found4 or address
            continue
        ip6 = parse_ipv6(address) if "/" not in address else None
        if ip6 is None:
            raise InputError(
                f"{safe_repr(address)} is not an IP address",
                obj=obj,
                field=f"status.addresses[{i}].address",
            )
        found6 = found6 or ip6
    return found4, found6


def _metadata_and_name(obj: object, where: str) -> tuple[Mapping[str, Any], str]:
    """``metadata`` and ``metadata.name`` of a Node object; errors name ``where``."""
    label = where or "Node object"
    if not is_map(obj):
        raise InputError(f"must be a map, got {type_name(obj)}", obj=label)
    kind = obj.get("kind")
    if kind is not None and kind != "Node":
        raise InputError(f"expected kind Node, got {safe_repr(kind)}", obj=label, field="kind")
    metadata = obj.get("metadata")
    if not is_map(metadata):
        what = "missing" if metadata is None else f"must be a map, got {type_name(metadata)}"
        raise InputError(what, obj=label, field="metadata")
    return metadata, _item_string(metadata, "name", label, "metadata")


def node_from_k8s(obj: Mapping[str, Any], *, where: str = "") -> Node:
    """Convert one Kubernetes Node object into a :class:`~calico_rr.model.Node`.

    ``where`` names the object in errors raised before its name is known
    (e.g. ``"item 3 of nodes.yaml"``).

    The node's BGP address is the ``projectcalico.org/IPv4Address`` annotation, as
    calico-node reads it in KDD mode (domain.md section 2); when a file lacks it
    (a cluster not running Calico yet, or a trimmed export) the first IPv4
    ``InternalIP`` is used, which is what calico-node's default autodetection
    (``IP_AUTODETECTION_METHOD=kubernetes-internal-ip`` or first-found) picks in the
    common single-NIC case.  The IPv6 address (``ip6``) is read the same way from
    ``projectcalico.org/IPv6Address`` or the first IPv6 ``InternalIP``.  No address
    at all gives ``ip=None, ip6=None``: such a node runs no BGP and is never chosen.
    """
    metadata, name = _metadata_and_name(obj, where)
    label = f"Node {name}"
    labels = dict(string_map(metadata.get("labels"), label, "metadata.labels"))
    annotations = dict(string_map(metadata.get("annotations"), label, "metadata.annotations"))
    created = timestamp_field(metadata, "creationTimestamp", label)
    # Only presence matters for the planner (a node being deleted is never chosen,
    # domain.md section 6), but a garbage value still signals a broken file.
    deleting = timestamp_field(metadata, "deletionTimestamp", label) is not None

    spec = mapping(obj.get("spec"), label, "spec")
    unschedulable = flag(
        spec, "unschedulable", default=False, obj=label, field="spec.unschedulable"
    )
    taints = _taints(spec, label)
    status = mapping(obj.get("status"), label, "status")
    conditions = _conditions(status, label)
    ip, ip6 = _internal_ips(status, label)  # validated even when an annotation wins
    annotated = annotations.get(ANN_IPV4)
    if annotated is not None:
        ip = ipv4_field(annotated, label, f'metadata.annotations["{ANN_IPV4}"]')
    annotated6 = annotations.get(ANN_IPV6)
    if annotated6 is not None:
        ip6 = ipv6_field(annotated6, label, f'metadata.annotations["{ANN_IPV6}"]')
    # The same check verify and doctor apply (core.values): a plan must not rest on
    # a cluster ID calico-node would refuse.
    cluster_id(
        annotations.get(ANN_CLUSTER_ID),
        obj=label,
        field=f'metadata.annotations["{ANN_CLUSTER_ID}"]',
    )
    return Node(
        name=name,
        ip=ip,
        labels=labels,
        annotations=annotations,
        conditions=conditions,
        taints=taints,
        unschedulable=unschedulable,
        deleting=deleting,
        created=0.0 if created is None else created,
        raw=obj,
        ip6=ip6,
    )


def _name_of(obj: Mapping[str, Any]) -> str:
    """``metadata.name`` of an object we skip, for a note ("" when there is none)."""
    meta = obj.get("metadata")
    name = meta.get("name") if is_map(meta) else None
    return name if isinstance(name, str) else ""


def nodes_from_documents(docs: Iterable[Any], *, where: str) -> tuple[list[Node], list[str]]:
    """Every Node in decoded YAML/JSON documents, sorted by name, plus notes.

    Each document is a ``NodeList``, a generic ``List`` (``kubectl get nodes,pods
    -o yaml``; items of other kinds are skipped and each skip is reported in the
    notes), a single ``Node``, or ``None`` (an empty YAML document, skipped).
    ``where`` names the source (a file name) in errors and notes.  Two nodes with
    the same name are an error: the planner keys everything by node name.
    """
    nodes: list[Node] = []
    notes: list[str] = []
    seen: dict[str, str] = {}

    def add(node: Node, location: str) -> None:
        first = seen.get(node.name)
        if first is not None:
            raise duplicate("node name", first, location, obj=f"Node {node.name}")
        seen[node.name] = location
        nodes.append(node)

    for d, doc in enumerate(docs, 1):
        if doc is None:
            continue
        doc_label = position(where, d)
        if not isinstance(doc, Mapping):
            raise InputError(
                f"expected a NodeList, List or Node object, got {type_name(doc)}", obj=doc_label
            )
        kind = doc.get("kind")
        if kind == "Node":
            add(node_from_k8s(doc, where=doc_label), doc_label)
            continue
        if isinstance(kind, str) and kind and kind not in ("NodeList", "List"):
            # A stream from `render --include-nodes` or `kubectl get nodes,bgppeers`
            # also holds Calico objects: they are not nodes, so they are skipped.
            notes.append(f"{doc_label}: skipped {kind} {_name_of(doc)}".rstrip())
            continue
        if kind not in ("NodeList", "List"):
            raise InputError(
                f"expected kind NodeList, List or Node, got {safe_repr(kind)}",
                obj=doc_label,
                field="kind",
            )
        items = _optional_list(doc, "items", doc_label, "items")
        for i, item in enumerate(items, 1):
            item_label = position(where, d, i)
            if kind == "List" and is_map(item):
                item_kind = item.get("kind")
                if item_kind != "Node":
                    if not isinstance(item_kind, str) or not item_kind:
                        raise InputError("missing", obj=item_label, field="kind")
                    notes.append(
                        f"{item_label}: skipped {item_kind} {_name_of(item)!r} (not a Node)"
                    )
                    continue
            add(node_from_k8s(item, where=item_label), item_label)

    nodes.sort(key=lambda n: n.name)
    return nodes, [one_line(n) for n in notes]


# ---------------------------------------------------------------------------
# Writing one Node
# ---------------------------------------------------------------------------


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copy_tree(value: Any) -> Any:
    # copy.deepcopy is generic (memo dict, reduce protocol) and several times slower;
    # decoded YAML/JSON is only maps, lists and immutable scalars, and most values
    # are scalars, which are shared rather than visited.
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else _copy_tree(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else _copy_tree(v) for v in value]
    if kind in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy_tree(v) for v in value]
    return value  # datetime from an unquoted YAML timestamp, etc.: immutable


def _build(node: Node) -> dict[str, Any]:
    """A complete Node object for a node without ``raw`` (synthetic clusters)."""
    try:
        created = format_timestamp(node.created)
    except ValueError as exc:
        raise InputError(str(exc), obj=f"Node {node.name}", field="created") from None
    metadata: dict[str, Any] = {
        "name": node.name,
        "labels": dict(node.labels),
        "annotations": dict(node.annotations),
        "creationTimestamp": created,
    }
    if node.deleting:
        # The model keeps no deletion time; the creation time is a valid,
        # never-in-the-future stand-in.
        metadata["deletionTimestamp"] = created
    if node.ip is not None and ANN_IPV4 not in node.annotations:
        # calico-node writes the address with its subnet's prefix length; synthetic
        # clusters place 254 nodes per /24 (core.planning.synthetic).
        metadata["annotations"][ANN_IPV4] = f"{node.ip}/24"
    if node.ip6 is not None and ANN_IPV6 not in node.annotations:
        # synthetic clusters put every IPv6 address in one /64 (core.planning.synthetic)
        metadata["annotations"][ANN_IPV6] = f"{node.ip6}/64"
    spec: dict[str, Any] = {}
    if node.unschedulable:
        spec["unschedulable"] = True
    if node.taints:
        spec["taints"] = [
            {"key": t.key, "value": t.value, "effect": t.effect}
            if t.value
            else {"key": t.key, "effect": t.effect}
            for t in node.taints
        ]
    status: dict[str, Any] = {
        "conditions": [{"type": t, "status": s} for t, s in node.conditions.items()],
    }
    addresses = [
        {"type": "InternalIP", "address": ip} for ip in (node.ip, node.ip6) if ip is not None
    ]
    if addresses:
        status["addresses"] = [*addresses, {"type": "Hostname", "address": node.name}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    }


def _edit_map(
    metadata: dict[str, Any], key: str, remove: Iterable[str], add: Mapping[str, str]
) -> None:
    current = metadata.get(key)
    if current is None:
        if not add:
            return
        current = metadata[key] = {}
    for k in remove:
        current.pop(k, None)
    current.update(add)


def node_to_k8s(
    node: Node,
    *,
    labels: Mapping[str, str] = _EMPTY,
    annotations: Mapping[str, str] = _EMPTY,
    remove_labels: Iterable[str] = (),
    remove_annotations: Iterable[str] = (),
) -> dict[str, Any]:
    """The whole Node object, ready for ``kubectl apply --server-side``.

    A node read from a file (``node.raw`` set) is written back as read, minus the
    server-owned ``metadata.resourceVersion``, ``uid`` and ``managedFields``; the
    other fields of ``node`` are *not* consulted, so pass changes through the
    keyword arguments.  A synthetic node gets a complete object built from its
    fields, including the ``projectcalico.org/IPv4Address`` annotation
    ``"<ip>/24"`` when it has an address and no such annotation.

    Removals are applied first, then additions (so a key in both ends up set).
    The result shares nothing with ``node``: callers may mutate it.
    """
    if node.raw is not None:
        raw = node.raw
        metadata_in = raw.get("metadata")
        if not is_map(metadata_in):  # raw came from node_from_k8s: cannot happen
            raise InputError("must be a map", obj=f"Node {node.name}", field="metadata")
        # Copy metadata without the server-owned fields rather than copy-then-delete:
        # managedFields is often the largest part of a Node object.
        metadata = {
            k: _copy_tree(v) for k, v in metadata_in.items() if k not in _SERVER_OWNED_METADATA
        }
        obj: dict[str, Any] = {
            k: metadata if k == "metadata" else _copy_tree(v) for k, v in raw.items()
        }
    else:
        obj = _build(node)
        metadata = obj["metadata"]
    if labels or remove_labels:
        _edit_map(metadata, "labels", remove_labels, labels)
    if annotations or remove_annotations:
        _edit_map(metadata, "annotations", remove_annotations, annotations)
    return obj
