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
1-based ("item 3 of nodes.yaml"), as a person counts them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any, TypeGuard

from calico_rr.core.values import cluster_id, is_dotted_quad
from calico_rr.errors import InputError, one_line, safe_repr
from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV4, Node, Taint

__all__ = [
    "check_string_map",
    "format_timestamp",
    "node_from_k8s",
    "node_to_k8s",
    "nodes_from_documents",
    "parse_ipv4",
    "parse_timestamp",
    "position",
    "type_name",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})

#: metadata fields the API server owns; an apply request carrying them would either
#: be rejected (a stale resourceVersion conflicts) or fight the server for them.
_SERVER_OWNED_METADATA = frozenset({"resourceVersion", "uid", "managedFields"})


# ---------------------------------------------------------------------------
# Naming things in messages: positions and values
# ---------------------------------------------------------------------------


def position(where: str, document: int, item: int = 0) -> str:
    """Where an object sits in decoded input, counted as a person counts (1-based).

    Every reader of documents (nodes here, :mod:`calico_rr.core.bgp.resources` for
    ``verify``, :mod:`calico_rr.core.doctor.inventory`) names objects with this one function,
    so the same input error gives the same words in every command:

    * ``document 2 of f.yaml``: the second document of a stream (empty ``---``
      documents count), when the document is the object itself (``item`` 0);
    * ``item 3 of f.yaml``: the third item of the ``List`` that is the first
      document, which is what a single-document file, the common case, reads as;
    * ``item 3 of document 2 of f.yaml``: the same in a later document.
    """
    if item <= 0:
        return f"document {document} of {where}"
    if document == 1:
        return f"item {item} of {where}"
    return f"item {item} of document {document} of {where}"


# ---------------------------------------------------------------------------
# Scalars: IPv4 addresses and RFC 3339 timestamps
# ---------------------------------------------------------------------------


_PREFIX_LENGTHS = frozenset(str(n) for n in range(33))


def parse_ipv4(text: str) -> str | None:
    """The address of ``"10.0.0.5"`` or ``"10.0.0.5/24"``, or None when malformed.

    The prefix form is what calico-node writes into the ``projectcalico.org/IPv4Address``
    annotation in KDD mode (domain.md section 2); it parses it as a CIDR (prefix
    length 0-32; a dotted netmask is not CIDR and is refused).
    """
    address, slash, prefix = text.partition("/")
    if slash and prefix not in _PREFIX_LENGTHS:
        return None
    return address if is_dotted_quad(address) else None


# RFC 3339 section 5.6 "date-time": full date, "T", full time, mandatory offset.
# datetime.fromisoformat() alone would also accept ISO 8601 forms that are not
# RFC 3339 (no offset, week dates, "20240102T030405"), so the shape is checked
# here first; fromisoformat (C code, fast) then checks the ranges (no April 31st).
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)")

#: datetime's range, so that every value format_timestamp writes parses back.
_MIN_TS = -62135596800.0  # 0001-01-01T00:00:00Z
_MAX_TS = 253402300800.0  # 10000-01-01T00:00:00Z (exclusive)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def parse_timestamp(text: str) -> float:
    """POSIX seconds of an RFC 3339 date-time such as ``"2024-01-02T03:04:05Z"``.

    Fractions beyond microseconds are truncated.  Raises ValueError when ``text``
    is not an RFC 3339 date-time.
    """
    if _RFC3339.fullmatch(text) is None:
        raise ValueError("not an RFC 3339 date-time such as 2024-01-02T03:04:05Z")
    if text[10] == "t" or text[-1] == "z":  # RFC 3339 allows lower case; Python does not
        text = text.upper()
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise ValueError(f"not a valid date-time ({exc})") from None


@lru_cache(maxsize=4096)
def _day(days: int) -> str:
    # Nodes of one cluster are created over a few years at most: caching the date
    # part makes formatting a 50,000-node cluster's timestamps cheap.
    return date.fromordinal(_EPOCH_ORDINAL + days).isoformat()


def format_timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with a ``Z``, as the API server writes metav1.Time.

    Kubernetes stores whole seconds; a fractional part is written (microseconds,
    trailing zeros trimmed) only when ``seconds`` has one.  Raises ValueError
    outside years 1-9999.
    """
    if not _MIN_TS <= seconds < _MAX_TS:  # also false for NaN
        raise ValueError(f"{seconds!r} is outside years 1-9999")
    whole = math.floor(seconds)
    micro = round((seconds - whole) * 1_000_000)
    if micro == 1_000_000:
        whole, micro = whole + 1, 0
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{_day(days)}T{hours:02d}:{minutes:02d}:{secs:02d}"
    if micro:
        text += "." + f"{micro:06d}".rstrip("0")
    return text + "Z"


# ---------------------------------------------------------------------------
# Reading one Node
# ---------------------------------------------------------------------------


def type_name(value: object) -> str:
    """What a decoded value is, in words for a message: "a map", "a list", "null", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def _is_map(value: object) -> TypeGuard[Mapping[str, Any]]:
    # isinstance(x, Mapping) goes through the ABC machinery (~10x slower than a type
    # check); decoded YAML and JSON only ever produce plain dicts.
    return type(value) is dict or isinstance(value, Mapping)


def _optional_map(parent: Mapping[str, Any], key: str, obj: str, path: str) -> Mapping[str, Any]:
    """``parent[key]`` as a map; absent or null is an empty map (Kubernetes omitempty)."""
    value = parent.get(key)
    if value is None:
        return _EMPTY
    if not _is_map(value):
        raise InputError(f"must be a map, got {type_name(value)}", obj=obj, field=path)
    return value


def _optional_list(parent: Mapping[str, Any], key: str, obj: str, path: str) -> list[Any]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(f"must be a list, got {type_name(value)}", obj=obj, field=path)
    return value


def check_string_map(value: Mapping[Any, Any], obj: str, path: str) -> None:
    """Raise InputError on the first key or value of ``value`` that is not a string.

    Labels and annotations are Kubernetes' map[string]string; ``verify``
    (core.bgp.resources) checks them with this function too, so a bad label reads the
    same in every command.
    """
    for k, v in value.items():
        if not isinstance(k, str):
            raise InputError(f"key {safe_repr(k)} must be a string", obj=obj, field=path)
        if not isinstance(v, str):
            # Typically an unquoted YAML value: `yes`, `true`, `1.0` decode as non-strings.
            raise InputError(
                f"must be a string, got {type_name(v)} {safe_repr(v)} (quote it in YAML)",
                obj=obj,
                field=f'{path}["{k}"]',
            )


def _string_map(parent: Mapping[str, Any], key: str, obj: str, path: str) -> dict[str, str]:
    """Labels or annotations: a map of strings to strings (Kubernetes' map[string]string)."""
    value = _optional_map(parent, key, obj, path)
    check_string_map(value, obj, path)
    return dict(value)


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


def _conditions(status: Mapping[str, Any], obj: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, item in enumerate(_optional_list(status, "conditions", obj, "status.conditions")):
        # Fast path first: real nodes carry five or more conditions each, and this
        # runs for every node of a 50,000-node file.
        ctype = cstatus = None
        if type(item) is dict:
            ctype = item.get("type")
            cstatus = item.get("status")
        if not (type(ctype) is str and ctype and type(cstatus) is str and cstatus):
            path = f"status.conditions[{i}]"
            if not _is_map(item):
                raise InputError(f"must be a map, got {type_name(item)}", obj=obj, field=path)
            ctype = _item_string(item, "type", obj, path)
            cstatus = _item_string(item, "status", obj, path)
        if ctype in out:
            # The API server keys conditions by type (patchMergeKey), so a repeat
            # means a hand-edited file; which entry is right cannot be guessed.
            raise InputError(
                f"condition {ctype!r} listed twice", obj=obj, field=f"status.conditions[{i}].type"
            )
        out[ctype] = cstatus
    return out


def _taints(spec: Mapping[str, Any], obj: str) -> tuple[Taint, ...]:
    items = _optional_list(spec, "taints", obj, "spec.taints")
    if not items:
        return ()
    out: list[Taint] = []
    for i, item in enumerate(items):
        path = f"spec.taints[{i}]"
        if not _is_map(item):
            raise InputError(f"must be a map, got {type_name(item)}", obj=obj, field=path)
        out.append(
            Taint(
                key=_item_string(item, "key", obj, path),
                effect=_item_string(item, "effect", obj, path),
                value=_item_string(item, "value", obj, path, required=False),
            )
        )
    return tuple(out)


def _timestamp(metadata: Mapping[str, Any], key: str, obj: str) -> float | None:
    value = metadata.get(key)
    if value is None:
        return None
    if isinstance(value, datetime):
        # yaml.safe_load turns an *unquoted* timestamp into a datetime; kubectl quotes
        # them, but hand-written files may not.  Naive means UTC in YAML 1.1.
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if not isinstance(value, str):
        raise InputError(
            f"must be an RFC 3339 string, got {type_name(value)}",
            obj=obj,
            field=f"metadata.{key}",
        )
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InputError(f"{safe_repr(value)}: {exc}", obj=obj, field=f"metadata.{key}") from None


def _internal_ipv4(status: Mapping[str, Any], obj: str) -> str | None:
    found: str | None = None
    for i, item in enumerate(_optional_list(status, "addresses", obj, "status.addresses")):
        atype = address = None
        if type(item) is dict:  # fast path, as in _conditions
            atype = item.get("type")
            address = item.get("address")
        if not (type(atype) is str and atype and type(address) is str and address):
            path = f"status.addresses[{i}]"
            if not _is_map(item):
                raise InputError(f"must be a map, got {type_name(item)}", obj=obj, field=path)
            atype = _item_string(item, "type", obj, path)
            address = _item_string(item, "address", obj, path)
        if found is not None or atype != "InternalIP":
            continue
        if is_dotted_quad(address):  # a bare address here, never CIDR
            found = address
        elif ":" not in address:
            # IPv6 InternalIPs (dual-stack nodes) are expected and skipped; anything
            # else is neither family.
            raise InputError(
                f"{safe_repr(address)} is not an IP address",
                obj=obj,
                field=f"status.addresses[{i}].address",
            )
    return found


def node_from_k8s(obj: Mapping[str, Any], *, where: str = "") -> Node:
    """Convert one Kubernetes Node object into a :class:`~calico_rr.model.Node`.

    ``where`` names the object in errors raised before its name is known
    (e.g. ``"item 3 of nodes.yaml"``).

    The node's BGP address is the ``projectcalico.org/IPv4Address`` annotation, as
    calico-node reads it in KDD mode (domain.md section 2); when a file lacks it
    (a cluster not running Calico yet, or a trimmed export) the first IPv4
    ``InternalIP`` is used, which is what calico-node's default autodetection
    (``IP_AUTODETECTION_METHOD=kubernetes-internal-ip`` or first-found) picks in the
    common single-NIC case.  No address at all gives ``ip=None``: such a node runs
    no BGP and is never chosen.
    """
    label = where or "Node object"
    if not _is_map(obj):
        raise InputError(f"must be a map, got {type_name(obj)}", obj=label)
    kind = obj.get("kind")
    if kind is not None and kind != "Node":
        raise InputError(f"expected kind Node, got {safe_repr(kind)}", obj=label, field="kind")
    metadata = obj.get("metadata")
    if not _is_map(metadata):
        what = "missing" if metadata is None else f"must be a map, got {type_name(metadata)}"
        raise InputError(what, obj=label, field="metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        what = "missing" if name is None else f"must be a non-empty string, got {safe_repr(name)}"
        raise InputError(what, obj=label, field="metadata.name")
    label = f"Node {name}"

    labels = _string_map(metadata, "labels", label, "metadata.labels")
    annotations = _string_map(metadata, "annotations", label, "metadata.annotations")
    created = _timestamp(metadata, "creationTimestamp", label)
    # Only presence matters for the planner (a node being deleted is never chosen,
    # domain.md section 6), but a garbage value still signals a broken file.
    deleting = _timestamp(metadata, "deletionTimestamp", label) is not None

    spec = _optional_map(obj, "spec", label, "spec")
    unschedulable = spec.get("unschedulable")
    if unschedulable is None:
        unschedulable = False
    elif not isinstance(unschedulable, bool):
        raise InputError(
            f"must be true or false, got {type_name(unschedulable)} {safe_repr(unschedulable)}",
            obj=label,
            field="spec.unschedulable",
        )
    taints = _taints(spec, label)

    status = _optional_map(obj, "status", label, "status")
    conditions = _conditions(status, label)
    fallback_ip = _internal_ipv4(status, label)  # validated even when unused

    annotated = annotations.get(ANN_IPV4)
    if annotated is not None:
        ip = parse_ipv4(annotated)
        if ip is None:
            raise InputError(
                f"{safe_repr(annotated)} is not an IPv4 address such as 10.0.0.5/24",
                obj=label,
                field=f'metadata.annotations["{ANN_IPV4}"]',
            )
    else:
        ip = fallback_ip
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
    )


def _name_of(obj: Mapping[str, Any]) -> str:
    """``metadata.name`` of an object we skip, for a note ("" when there is none)."""
    meta = obj.get("metadata")
    name = meta.get("name") if _is_map(meta) else None
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
            raise InputError(
                f"duplicate node name (first seen as {first}, again as {location})",
                obj=f"Node {node.name}",
                field="metadata.name",
            )
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
            if kind == "List" and _is_map(item):
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
    if node.ip is not None:
        status["addresses"] = [
            {"type": "InternalIP", "address": node.ip},
            {"type": "Hostname", "address": node.name},
        ]
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
        if not _is_map(metadata_in):  # raw came from node_from_k8s: cannot happen
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
