"""Calico Node documents of the etcd datastore <-> the planner's nodes (pure).

The BGP fields of a Calico Node live in ``spec.bgp`` (``ipv4Address`` and
``ipv6Address`` in CIDR form, ``asNumber``, ``routeReflectorClusterID``); its
labels are the node's labels.  The core works on :class:`~calico_rr.model.Node`,
which carries those fields the way the Kubernetes datastore (KDD) does, as
annotations.  :func:`node_from_calico`
therefore presents ``spec.bgp`` under the KDD annotation names
(``projectcalico.org/IPv4Address``, ``/IPv6Address``, ``/ASNumber``,
``/RouteReflectorClusterID``), so
that the planner, ``render`` and ``reconcile`` read an etcd node exactly like a KDD
one; :func:`apply_node` maps them back into ``spec.bgp`` when writing.

Health
------
etcd has no Kubernetes node readiness, no cordon and no deletion timestamp.  What
stands in for them is the caller's choice, passed as ``ready``: a Calico Node that
exists is registered (calico-node creates it on start and ``calicoctl delete node``
removes it), and Felix, in etcd mode, keeps a liveness report under
``/calico/felix/v2/<region>/host/<hostname>/status`` on a lease that expires when
Felix stops reporting (:func:`calico_rr.core.formats.etcd.felix_status_host` parses
those keys).  Where the hosts are Kubernetes nodes, their Kubernetes Node is the
better source: :func:`with_kube_health` takes conditions, taints, cordon and
deletion from it, matched by ``spec.orchRefs`` (:func:`k8s_node_name`).  Nodes that
must not hold route reflectors are excluded with ``incompatibleNodeLabels``.

Ownership
---------
On nodes, Kubernetes records which label/annotation keys our field manager applied
in ``managedFields``.  etcd has no such record, so calico-rr keeps its own: the
annotation ``calico-rr.io/owned-fields`` on the Calico Node lists the label keys and
the (KDD-named) annotation keys it set, in the vocabulary of
:class:`~calico_rr.core.operator.state.NodeState`.  :func:`apply_node` follows
server-side apply's rules with it: the keys given are the complete set of ours, keys
we set before and omit now are removed, and a key someone else set to a different
value is a conflict (:class:`~calico_rr.core.formats.etcd.OwnershipConflict`), never
overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Final

from calico_rr.core.bgp.families import address_annotations
from calico_rr.core.formats.etcd import API_VERSION, OwnershipConflict, check_name
from calico_rr.core.formats.fields import mapping, string_map
from calico_rr.core.formats.scalars import (
    format_timestamp,
    ipv4_field,
    ipv6_field,
    timestamp_field,
)
from calico_rr.core.operator.state import NodeState
from calico_rr.core.values import cluster_id
from calico_rr.errors import InputError
from calico_rr.model import ANN_ASN, ANN_CLUSTER_ID, ANN_IPV4, ANN_IPV6, PREFIX, Node

#: Our record of the node fields we set (the etcd stand-in for managedFields).
OWNED_FIELDS_ANNOTATION: Final = f"{PREFIX}/owned-fields"

_CID = "routeReflectorClusterID"

#: KDD annotation -> its field in ``spec.bgp``
_BGP_ANNOTATIONS = {
    ANN_IPV4: "ipv4Address",
    ANN_IPV6: "ipv6Address",
    ANN_ASN: "asNumber",
    ANN_CLUSTER_ID: _CID,
}


# ---------------------------------------------------------------------------
# Health: the Kubernetes Node behind a Calico Node
# ---------------------------------------------------------------------------


def k8s_node_name(doc: Mapping[str, Any]) -> str:
    """The Kubernetes Node a Calico Node stands for: ``spec.orchRefs`` entry with
    ``orchestrator: k8s`` (calico-node writes it in etcd mode on Kubernetes), else
    the Calico Node's own name."""
    spec = doc.get("spec")
    refs = spec.get("orchRefs") if isinstance(spec, Mapping) else None
    if isinstance(refs, list):
        for ref in refs:
            if (
                isinstance(ref, Mapping)
                and ref.get("orchestrator") == "k8s"
                and isinstance(ref.get("nodeName"), str)
                and ref["nodeName"]
            ):
                return str(ref["nodeName"])
    meta = doc.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, Mapping) else ""


def with_kube_health(node: Node, kube: Node | None) -> Node:
    """``node`` (from its Calico Node) with the health of its Kubernetes Node:
    conditions, taints, cordon, deletion.  Labels, addresses and BGP fields stay
    the Calico Node's (they are what calico-node peers by).  No Kubernetes Node of
    that name: ``Ready`` is ``Unknown`` — never chosen as an RR, an RR loses its
    role make-before-break, as for a NotReady node."""
    if kube is None:
        return replace(node, conditions={"Ready": "Unknown"}, taints=(), unschedulable=False)
    return replace(
        node,
        conditions=dict(kube.conditions),
        taints=kube.taints,
        unschedulable=kube.unschedulable,
        deleting=kube.deleting,
    )


# ---------------------------------------------------------------------------
# Reading and writing a Calico Node
# ---------------------------------------------------------------------------


def owned_fields(doc: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """Label and (KDD-named) annotation keys calico-rr set on a Calico Node."""
    meta = mapping(doc.get("metadata"), "Node", "metadata")
    name = meta.get("name")
    annotations = mapping(meta.get("annotations"), f"Node {name}", "metadata.annotations")
    text = annotations.get(OWNED_FIELDS_ANNOTATION)
    if text is None:
        return frozenset(), frozenset()
    field = f'metadata.annotations["{OWNED_FIELDS_ANNOTATION}"]'
    try:
        record = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise InputError(
            'must be JSON like {"labels": [...], "annotations": [...]}',
            obj=f"Node {name}",
            field=field,
        )
    out: list[frozenset[str]] = []
    for part in ("labels", "annotations"):
        keys = record.get(part) or []
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise InputError(f"{part} must be a list of strings", obj=f"Node {name}", field=field)
        out.append(frozenset(keys))
    return out[0], out[1]


def node_from_calico(doc: Mapping[str, Any], *, ready: bool = True) -> Node:
    """A Calico v3 Node document as the planner's :class:`~calico_rr.model.Node`.

    ``spec.bgp`` appears under the KDD annotation names (module doc); the node's
    address is ``spec.bgp.ipv4Address`` without its prefix length (no address: the
    node runs no BGP and is never chosen).  ``ready`` becomes the ``Ready``
    condition: etcd has no readiness of its own (module doc).
    """
    meta = mapping(doc.get("metadata"), "Node", "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InputError("missing or not a string", obj="Node", field="metadata.name")
    where = f"Node {name}"
    if doc.get("kind", "Node") != "Node":
        raise InputError(f"expected kind Node, got {doc.get('kind')!r}", obj=where, field="kind")
    labels = dict(string_map(meta.get("labels"), where, "metadata.labels"))
    annotations = dict(string_map(meta.get("annotations"), where, "metadata.annotations"))
    spec = mapping(doc.get("spec"), where, "spec")
    bgp = mapping(spec.get("bgp"), where, "spec.bgp")
    ip: str | None = None
    address = bgp.get("ipv4Address")
    if address:
        ip = ipv4_field(address, where, "spec.bgp.ipv4Address")
        annotations[ANN_IPV4] = address
    ip6: str | None = None
    address6 = bgp.get("ipv6Address")
    if address6:
        ip6 = ipv6_field(address6, where, "spec.bgp.ipv6Address")
        annotations[ANN_IPV6] = address6
    asn = bgp.get("asNumber")
    if asn is not None and asn != "":
        if isinstance(asn, bool) or not isinstance(asn, int | str):
            raise InputError(f"must be an AS number, got {asn!r}", obj=where, field="spec.bgp")
        annotations[ANN_ASN] = str(asn)
    cid = cluster_id(bgp.get(_CID) or None, obj=where, field=f"spec.bgp.{_CID}")
    if cid is not None:
        annotations[ANN_CLUSTER_ID] = cid
    created = timestamp_field(meta, "creationTimestamp", where)
    deleting = timestamp_field(meta, "deletionTimestamp", where) is not None
    return Node(
        name=name,
        ip=ip,
        labels=labels,
        annotations=annotations,
        conditions={"Ready": "True" if ready else "False"},
        deleting=deleting,
        created=0.0 if created is None else created,
        raw=doc,
        ip6=ip6,
    )


def node_to_calico(node: Node, *, uid: str | None = None) -> dict[str, Any]:
    """The Calico v3 Node document of ``node`` (the inverse of
    :func:`node_from_calico`): KDD-named BGP annotations go back into ``spec.bgp``;
    without an address annotation, ``node.ip`` is written as ``<ip>/32`` (and
    ``node.ip6`` as ``<ip6>/128``)."""
    check_name(node.name, f"Node {node.name!r}")
    annotations = {k: v for k, v in node.annotations.items() if k not in _BGP_ANNOTATIONS}
    bgp: dict[str, Any] = {}
    with_addresses = address_annotations(node, node.annotations)
    for ann, field in _BGP_ANNOTATIONS.items():
        value = with_addresses.get(ann)
        if value is not None:
            bgp[field] = int(value) if field == "asNumber" and value.isdigit() else value
    meta: dict[str, Any] = {"name": node.name, "labels": dict(node.labels)}
    if annotations:
        meta["annotations"] = annotations
    if uid is not None:
        meta["uid"] = uid
    meta["creationTimestamp"] = format_timestamp(node.created)
    spec: dict[str, Any] = {"bgp": bgp} if bgp else {}
    return {"apiVersion": API_VERSION, "kind": "Node", "metadata": meta, "spec": spec}


def node_state_from_calico(doc: Mapping[str, Any]) -> NodeState:
    """A Calico Node as ``core.operator.reconcile`` observes it: the node plus the keys we own.

    ``uid`` is the Calico Node's ``metadata.uid``; on etcd the write itself is
    guarded by the key's mod revision (compare-and-swap), which also refuses a
    node deleted and re-created meanwhile.
    """
    node = replace(node_from_calico(doc), raw=None)
    labels, annotations = owned_fields(doc)
    uid = (doc.get("metadata") or {}).get("uid")
    return NodeState(node, labels, annotations, str(uid) if uid else None)


# ---------------------------------------------------------------------------
# Applying our fields to a Calico Node
# ---------------------------------------------------------------------------


def _refuse_conflicts(
    current: Mapping[str, str],
    labels: Mapping[str, str],
    owned: frozenset[str],
    have_cid: object,
    want_cid: str | None,
    where: str,
) -> None:
    """Raise :class:`OwnershipConflict` when ``labels`` would change a label someone
    else set (not in ``owned``) or ``want_cid`` a cluster ID someone else set
    (``want_cid`` None: no cluster ID wanted, or the one there is ours)."""
    conflicts = [
        f'metadata.labels["{k}"] is {current[k]!r} (set by someone else), want {v!r}'
        for k, v in sorted(labels.items())
        if k in current and current[k] != v and k not in owned
    ]
    if want_cid is not None and have_cid not in (None, want_cid):
        conflicts.append(
            f"spec.bgp.{_CID} is {have_cid!r} (set by someone else), want {want_cid!r}"
        )
    if conflicts:
        raise OwnershipConflict("; ".join(conflicts), obj=where)


def _record(labels: Iterable[str], annotations: Iterable[str]) -> str:
    return json.dumps(
        {"labels": sorted(labels), "annotations": sorted(annotations)}, separators=(",", ":")
    )


def apply_node(
    doc: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    """The Calico Node ``doc`` with our fields set to exactly ``labels`` and
    ``annotations`` (a :class:`~calico_rr.core.operator.state.NodeApply`'s), as
    server-side apply would leave it.

    * Keys in ``labels`` are set; labels we set before (our record) and left out
      now are removed; other labels are untouched.
    * The only annotation we write is ``projectcalico.org/RouteReflectorClusterID``,
      stored as ``spec.bgp.routeReflectorClusterID``; left out after we set it, it
      is removed.
    * A key someone else set to a different value raises
      :class:`OwnershipConflict`; the same value is taken over (shared, as apply
      does).
    * The record annotation is updated (dropped when we own nothing).

    ``doc`` is not modified.  The result keeps every other field as it was; store
    it with a compare-and-swap on the mod revision it was read at.
    """
    meta_in = mapping(doc.get("metadata"), "Node", "metadata")
    where = f"Node {meta_in.get('name')}"
    extra = set(annotations) - {ANN_CLUSTER_ID}
    if extra:
        raise InputError(
            f"only {ANN_CLUSTER_ID} can be written to a Calico Node, got {sorted(extra)}",
            obj=where,
        )
    owned_l, owned_a = owned_fields(doc)
    current = string_map(meta_in.get("labels"), where, "metadata.labels")
    spec = dict(mapping(doc.get("spec"), where, "spec"))
    bgp = dict(mapping(spec.get("bgp"), where, "spec.bgp"))
    want_cid = annotations.get(ANN_CLUSTER_ID)
    ours_cid = ANN_CLUSTER_ID in owned_a
    _refuse_conflicts(
        current, labels, owned_l, bgp.get(_CID) or None, None if ours_cid else want_cid, where
    )

    new_labels = {k: v for k, v in current.items() if k not in owned_l or k in labels}
    new_labels.update(labels)
    if want_cid is not None:
        bgp[_CID] = want_cid
    elif ours_cid:
        bgp.pop(_CID, None)
    if bgp or "bgp" in spec:
        spec["bgp"] = bgp
    meta = dict(meta_in)
    meta["labels"] = new_labels
    ann = dict(string_map(meta_in.get("annotations"), where, "metadata.annotations"))
    if labels or annotations:
        ann[OWNED_FIELDS_ANNOTATION] = _record(labels, annotations)
    else:
        ann.pop(OWNED_FIELDS_ANNOTATION, None)
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    return {**doc, "metadata": meta, "spec": spec}
