"""Calico's etcd datastore layout and its documents <-> the core's data (pure).

In the etcdv3 datastore (domain.md section 8) every Calico resource is one JSON
document (``apiVersion: projectcalico.org/v3``, kind, metadata, spec) stored under

    /calico/resources/v3/projectcalico.org/<plural>/<name>

for cluster-scoped kinds (``nodes``, ``bgppeers``, ``bgpconfigurations``,
``caliconodestatuses``, ...).  Calico stores the document without
``metadata.resourceVersion`` and, when reading, fills it in from the key's etcd
mod revision; :func:`decode_document` does the same.

Nodes
-----
The BGP fields of a Calico Node live in ``spec.bgp`` (``ipv4Address`` in CIDR form,
``asNumber``, ``routeReflectorClusterID``); its labels are the node's labels.  The
core works on :class:`~calico_rr.model.Node`, which carries those fields the way the
Kubernetes datastore (KDD) does, as annotations.  :func:`node_from_calico`
therefore presents ``spec.bgp`` under the KDD annotation names
(``projectcalico.org/IPv4Address``, ``/ASNumber``, ``/RouteReflectorClusterID``), so
that the planner, ``render`` and ``reconcile`` read an etcd node exactly like a KDD
one; :func:`apply_node` maps them back into ``spec.bgp`` when writing.

etcd has no Kubernetes node readiness, no cordon and no deletion timestamp.  What
stands in for them is the caller's choice, passed as ``ready``: a Calico Node that
exists is registered (calico-node creates it on start and ``calicoctl delete node``
removes it), and Felix, in etcd mode, keeps a liveness report under
``/calico/felix/v2/<region>/host/<hostname>/status`` on a lease that expires when
Felix stops reporting (:func:`felix_status_host` parses those keys).  Where the
hosts are Kubernetes nodes, their Kubernetes Node is the better source:
:func:`with_kube_health` takes conditions, taints, cordon and deletion from it,
matched by ``spec.orchRefs`` (:func:`k8s_node_name`).  Nodes that must not hold
route reflectors are excluded with ``incompatibleNodeLabels``.

Ownership (the same marks as on Kubernetes)
-------------------------------------------
* Objects calico-rr creates (BGPPeers, CalicoNodeStatus, a BGPConfiguration it had
  to create) carry ``app.kubernetes.io/managed-by: calico-rr``; only those are ever
  changed or deleted (:func:`is_managed`, :func:`managed_document`).
* On nodes, Kubernetes records which label/annotation keys our field manager
  applied in ``managedFields``.  etcd has no such record, so calico-rr keeps its
  own: the annotation ``calico-rr.io/owned-fields`` on the Calico Node lists the
  label keys and the (KDD-named) annotation keys it set, in the vocabulary of
  :class:`~calico_rr.core.operator.reconcile.NodeState`.  :func:`apply_node` follows
  server-side apply's rules with it: the keys given are the complete set of ours,
  keys we set before and omit now are removed, and a key someone else set to a
  different value is a conflict (:class:`OwnershipConflict`), never overwritten.

Nothing here does I/O; adapters/etcd reads and writes the bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from calico_rr.core.bgp.resources import ParsedResources, parse_resources
from calico_rr.core.formats.kube import format_timestamp, parse_ipv4, parse_timestamp
from calico_rr.core.operator.state import NodeBGPStatus, NodeState
from calico_rr.errors import InputError
from calico_rr.model import (
    ANN_ASN,
    ANN_CLUSTER_ID,
    ANN_IPV4,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PREFIX,
    Node,
)

__all__ = [
    "API_VERSION",
    "FELIX_STATUS_PREFIX",
    "KINDS",
    "OWNED_FIELDS_ANNOTATION",
    "PLURALS",
    "RESOURCE_ROOT",
    "OwnershipConflict",
    "ResourceKey",
    "apply_node",
    "calico_state",
    "decode_document",
    "encode_document",
    "felix_status_host",
    "is_managed",
    "k8s_node_name",
    "managed_document",
    "mesh_document",
    "mesh_enabled",
    "node_from_calico",
    "node_state_from_calico",
    "node_status_from_calico",
    "node_to_calico",
    "owned_fields",
    "parse_key",
    "plural_prefix",
    "resource_key",
    "with_kube_health",
]

API_VERSION: Final = "projectcalico.org/v3"
RESOURCE_ROOT: Final = "/calico/resources/v3/projectcalico.org/"
FELIX_STATUS_PREFIX: Final = "/calico/felix/v2/"

#: Kind -> plural of the kinds calico-rr reads or writes (all cluster-scoped).
PLURALS: Final[Mapping[str, str]] = {
    "Node": "nodes",
    "BGPPeer": "bgppeers",
    "BGPConfiguration": "bgpconfigurations",
    "CalicoNodeStatus": "caliconodestatuses",
}
KINDS: Final[Mapping[str, str]] = {plural: kind for kind, plural in PLURALS.items()}

#: Our record of the node fields we set (the etcd stand-in for managedFields).
OWNED_FIELDS_ANNOTATION: Final = f"{PREFIX}/owned-fields"

# A Kubernetes/Calico object name: a DNS-1123 subdomain (lower case alphanumerics,
# '-' and '.', at most 253 characters).  Above all it has no '/', so that a name
# can never reach outside its kind's directory.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", re.ASCII)

_FELIX_STATUS = re.compile(r"/calico/felix/v2/([^/]+)/host/([^/]+)/status")


class OwnershipConflict(InputError):
    """A write would change a field calico-rr does not own (someone else set it)."""


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceKey:
    plural: str
    name: str

    @property
    def kind(self) -> str | None:
        return KINDS.get(self.plural)


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise InputError(
            f"{name!r} is not a valid resource name (a DNS-1123 subdomain: "
            "lower-case letters, digits, '-' and '.', at most 253 characters)",
            obj=what,
            field="metadata.name",
        )


def plural_prefix(plural: str) -> str:
    """The key prefix of every resource of ``plural``, with its trailing slash."""
    if not re.fullmatch(r"[a-z0-9]+", plural):
        raise InputError(f"{plural!r} is not a resource plural such as 'bgppeers'")
    return f"{RESOURCE_ROOT}{plural}/"


def resource_key(plural: str, name: str) -> str:
    """``/calico/resources/v3/projectcalico.org/<plural>/<name>`` (validated)."""
    prefix = plural_prefix(plural)
    _check_name(name, f"{KINDS.get(plural, plural)} {name!r}")
    return prefix + name


def parse_key(key: str) -> ResourceKey | None:
    """(plural, name) of a cluster-scoped resource key, None for any other key
    (another tree, a namespaced resource, a malformed name)."""
    if not key.startswith(RESOURCE_ROOT):
        return None
    plural, slash, name = key[len(RESOURCE_ROOT) :].partition("/")
    if not slash or not re.fullmatch(r"[a-z0-9]+", plural) or not _NAME.fullmatch(name):
        return None
    return ResourceKey(plural, name)


def felix_status_host(key: str) -> str | None:
    """The hostname of a Felix liveness report key, else None."""
    found = _FELIX_STATUS.fullmatch(key)
    return found.group(2) if found else None


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
# Documents
# ---------------------------------------------------------------------------


def _map(value: object, obj: str, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"must be a map, got {type(value).__name__}", obj=obj, field=field)
    return value


def _string_map(value: object, obj: str, field: str) -> dict[str, str]:
    out = dict(_map(value, obj, field))
    for k, v in out.items():
        if not isinstance(v, str):
            raise InputError(f"must be a string, got {v!r}", obj=obj, field=f'{field}["{k}"]')
    return out


def decode_document(key: str, value: bytes, mod_revision: int) -> dict[str, Any]:
    """The resource stored at ``key``, checked against its key, with
    ``metadata.resourceVersion`` set to the mod revision (as Calico reads it).

    Raises :class:`InputError` for a value that is not a JSON object, names
    another kind or name than its key, or has another apiVersion.
    """
    where = f"etcd key {key}"
    parsed = parse_key(key)
    if parsed is None:
        raise InputError("not a Calico v3 resource key", obj=where)
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"value is not JSON: {exc}", obj=where) from None
    except RecursionError:  # a value nested thousands of levels deep: no Calico object
        raise InputError("value is nested too deeply to be a Calico resource", obj=where) from None
    if not isinstance(doc, dict):
        raise InputError(f"value must be a JSON object, got {type(doc).__name__}", obj=where)
    api = doc.get("apiVersion")
    if api != API_VERSION:
        raise InputError(f"expected {API_VERSION}, got {api!r}", obj=where, field="apiVersion")
    kind = parsed.kind
    if kind is not None and doc.get("kind") != kind:
        raise InputError(f"expected {kind}, got {doc.get('kind')!r}", obj=where, field="kind")
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        raise InputError("missing or not a map", obj=where, field="metadata")
    if meta.get("name") != parsed.name:
        raise InputError(
            f"name {meta.get('name')!r} does not match the key", obj=where, field="metadata.name"
        )
    meta["resourceVersion"] = str(mod_revision)
    return doc


def encode_document(doc: Mapping[str, Any]) -> tuple[str, bytes]:
    """(key, value) to store ``doc`` under: compact JSON without
    ``metadata.resourceVersion`` (the etcd revision is the version)."""
    kind = doc.get("kind")
    if not isinstance(kind, str) or kind not in PLURALS:
        raise InputError(f"cannot store kind {kind!r} (known: {sorted(PLURALS)})", field="kind")
    meta = _map(doc.get("metadata"), kind, "metadata")
    name = meta.get("name")
    if not isinstance(name, str):
        raise InputError("missing", obj=kind, field="metadata.name")
    key = resource_key(PLURALS[kind], name)
    if doc.get("apiVersion") != API_VERSION:
        raise InputError(
            f"expected {API_VERSION}, got {doc.get('apiVersion')!r}",
            obj=f"{kind} {name}",
            field="apiVersion",
        )
    body = dict(doc)
    body["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
    return key, json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def is_managed(doc: Mapping[str, Any] | None) -> bool:
    """True when calico-rr created ``doc`` (it carries our managed-by label)."""
    if doc is None:
        return False
    labels = (doc.get("metadata") or {}).get("labels") or {}
    return isinstance(labels, Mapping) and labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


def managed_document(
    obj: Mapping[str, Any],
    existing: Mapping[str, Any] | None,
    *,
    uid: str,
    now: float,
) -> dict[str, Any]:
    """Our object (a BGPPeer or CalicoNodeStatus as ``core.operator.reconcile`` makes it, in
    either API group) as the document to store in etcd.

    ``existing`` is what the key holds now (None: nothing).  Its ``uid`` and
    ``creationTimestamp`` are kept; a new document gets ``uid`` and ``now``.  The
    document must carry our managed-by label, and an existing one must too:
    anything else raises :class:`OwnershipConflict` (a user's object of the same
    name is never overwritten).  The object's ``status`` is taken from
    ``existing`` (calico-node writes it), not from ``obj``.
    """
    kind = obj.get("kind")
    meta_in = _map(obj.get("metadata"), str(kind), "metadata")
    name = meta_in.get("name")
    where = f"{kind} {name}"
    if not is_managed(obj):
        raise OwnershipConflict(
            f"refusing to write an object without {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}",
            obj=where,
        )
    if existing is not None and not is_managed(existing):
        raise OwnershipConflict(
            f"exists and was not created by calico-rr (no {MANAGED_BY_LABEL} label); "
            "it is left alone",
            obj=where,
        )
    old_meta = _map((existing or {}).get("metadata"), where, "metadata")
    labels = _string_map(meta_in.get("labels"), where, "metadata.labels")
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if meta_in.get("annotations"):
        meta["annotations"] = dict(meta_in["annotations"])
    meta["uid"] = old_meta.get("uid") or uid
    meta["creationTimestamp"] = old_meta.get("creationTimestamp") or format_timestamp(now)
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": meta,
        "spec": dict(_map(obj.get("spec"), where, "spec")),
    }
    status = (existing or {}).get("status")
    if status is not None:
        doc["status"] = status
    encode_document(doc)  # validates kind and name
    return doc


# ---------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------


def owned_fields(doc: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """Label and (KDD-named) annotation keys calico-rr set on a Calico Node."""
    meta = _map(doc.get("metadata"), "Node", "metadata")
    name = meta.get("name")
    annotations = _map(meta.get("annotations"), f"Node {name}", "metadata.annotations")
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


def _timestamp(meta: Mapping[str, Any], key: str, where: str) -> float | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError("must be an RFC 3339 string", obj=where, field=f"metadata.{key}")
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InputError(f"{value!r}: {exc}", obj=where, field=f"metadata.{key}") from None


def node_from_calico(doc: Mapping[str, Any], *, ready: bool = True) -> Node:
    """A Calico v3 Node document as the planner's :class:`~calico_rr.model.Node`.

    ``spec.bgp`` appears under the KDD annotation names (module doc); the node's
    address is ``spec.bgp.ipv4Address`` without its prefix length (no address: the
    node runs no BGP and is never chosen).  ``ready`` becomes the ``Ready``
    condition: etcd has no readiness of its own (module doc).
    """
    meta = _map(doc.get("metadata"), "Node", "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InputError("missing or not a string", obj="Node", field="metadata.name")
    where = f"Node {name}"
    if doc.get("kind", "Node") != "Node":
        raise InputError(f"expected kind Node, got {doc.get('kind')!r}", obj=where, field="kind")
    labels = _string_map(meta.get("labels"), where, "metadata.labels")
    annotations = _string_map(meta.get("annotations"), where, "metadata.annotations")
    spec = _map(doc.get("spec"), where, "spec")
    bgp = _map(spec.get("bgp"), where, "spec.bgp")
    ip: str | None = None
    address = bgp.get("ipv4Address")
    if address:
        ip = parse_ipv4(address) if isinstance(address, str) else None
        if ip is None:
            raise InputError(
                f"{address!r} is not an IPv4 address such as 10.0.0.5/24",
                obj=where,
                field="spec.bgp.ipv4Address",
            )
        annotations[ANN_IPV4] = address
    asn = bgp.get("asNumber")
    if asn is not None and asn != "":
        if isinstance(asn, bool) or not isinstance(asn, int | str):
            raise InputError(f"must be an AS number, got {asn!r}", obj=where, field="spec.bgp")
        annotations[ANN_ASN] = str(asn)
    cid = bgp.get("routeReflectorClusterID")
    if cid:
        if not isinstance(cid, str) or parse_ipv4(cid) != cid:
            raise InputError(
                f"route reflector cluster ID must be a dotted-quad IPv4, got {cid!r}",
                obj=where,
                field="spec.bgp.routeReflectorClusterID",
            )
        annotations[ANN_CLUSTER_ID] = cid
    created = _timestamp(meta, "creationTimestamp", where)
    deleting = _timestamp(meta, "deletionTimestamp", where) is not None
    return Node(
        name=name,
        ip=ip,
        labels=labels,
        annotations=annotations,
        conditions={"Ready": "True" if ready else "False"},
        deleting=deleting,
        created=0.0 if created is None else created,
        raw=doc,
    )


_BGP_ANNOTATIONS = {
    ANN_IPV4: "ipv4Address",
    ANN_ASN: "asNumber",
    ANN_CLUSTER_ID: "routeReflectorClusterID",
}


def node_to_calico(node: Node, *, uid: str | None = None) -> dict[str, Any]:
    """The Calico v3 Node document of ``node`` (the inverse of
    :func:`node_from_calico`): KDD-named BGP annotations go back into ``spec.bgp``;
    without an address annotation, ``node.ip`` is written as ``<ip>/32``."""
    _check_name(node.name, f"Node {node.name!r}")
    annotations = {k: v for k, v in node.annotations.items() if k not in _BGP_ANNOTATIONS}
    bgp: dict[str, Any] = {}
    for ann, field in _BGP_ANNOTATIONS.items():
        value = node.annotations.get(ann)
        if value is not None:
            bgp[field] = int(value) if field == "asNumber" and value.isdigit() else value
    if node.ip is not None and "ipv4Address" not in bgp:
        bgp["ipv4Address"] = f"{node.ip}/32"
    meta: dict[str, Any] = {"name": node.name, "labels": dict(node.labels)}
    if annotations:
        meta["annotations"] = annotations
    if uid is not None:
        meta["uid"] = uid
    meta["creationTimestamp"] = format_timestamp(node.created)
    spec: dict[str, Any] = {"bgp": bgp} if bgp else {}
    return {"apiVersion": API_VERSION, "kind": "Node", "metadata": meta, "spec": spec}


def node_state_from_calico(doc: Mapping[str, Any], *, ready: bool = True) -> NodeState:
    """A Calico Node as ``core.operator.reconcile`` observes it: the node plus the keys we own.

    ``uid`` is the Calico Node's ``metadata.uid``; on etcd the write itself is
    guarded by the key's mod revision (compare-and-swap), which also refuses a
    node deleted and re-created meanwhile.
    """
    node = replace(node_from_calico(doc, ready=ready), raw=None)
    labels, annotations = owned_fields(doc)
    uid = (doc.get("metadata") or {}).get("uid")
    return NodeState(node, labels, annotations, str(uid) if uid else None)


def _record(labels: Iterable[str], annotations: Iterable[str]) -> str:
    return json.dumps(
        {"labels": sorted(labels), "annotations": sorted(annotations)}, separators=(",", ":")
    )


def apply_node(
    doc: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    """The Calico Node ``doc`` with our fields set to exactly ``labels`` and
    ``annotations`` (a :class:`~calico_rr.core.operator.reconcile.NodeApply`'s), as
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
    meta_in = _map(doc.get("metadata"), "Node", "metadata")
    name = meta_in.get("name")
    where = f"Node {name}"
    extra = set(annotations) - {ANN_CLUSTER_ID}
    if extra:
        raise InputError(
            f"only {ANN_CLUSTER_ID} can be written to a Calico Node, got {sorted(extra)}",
            obj=where,
        )
    owned_l, owned_a = owned_fields(doc)
    current = _string_map(meta_in.get("labels"), where, "metadata.labels")
    spec = dict(_map(doc.get("spec"), where, "spec"))
    bgp = dict(_map(spec.get("bgp"), where, "spec.bgp"))
    conflicts = [
        f'metadata.labels["{k}"] is {current[k]!r} (set by someone else), want {v!r}'
        for k, v in sorted(labels.items())
        if k in current and current[k] != v and k not in owned_l
    ]
    want_cid = annotations.get(ANN_CLUSTER_ID)
    have_cid = bgp.get("routeReflectorClusterID") or None
    if want_cid is not None and have_cid not in (None, want_cid) and ANN_CLUSTER_ID not in owned_a:
        conflicts.append(
            f"spec.bgp.routeReflectorClusterID is {have_cid!r} (set by someone else), "
            f"want {want_cid!r}"
        )
    if conflicts:
        raise OwnershipConflict("; ".join(conflicts), obj=where)

    new_labels = {k: v for k, v in current.items() if k not in owned_l or k in labels}
    new_labels.update(labels)
    if want_cid is not None:
        bgp["routeReflectorClusterID"] = want_cid
    elif ANN_CLUSTER_ID in owned_a:
        bgp.pop("routeReflectorClusterID", None)
    meta = dict(meta_in)
    meta["labels"] = new_labels
    ann = _string_map(meta_in.get("annotations"), where, "metadata.annotations")
    if labels or annotations:
        ann[OWNED_FIELDS_ANNOTATION] = _record(labels, annotations)
    else:
        ann.pop(OWNED_FIELDS_ANNOTATION, None)
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    if bgp or "bgp" in spec:
        spec["bgp"] = bgp
    out = dict(doc)
    out["metadata"] = meta
    out["spec"] = spec
    return out


# ---------------------------------------------------------------------------
# BGPConfiguration, CalicoNodeStatus, the whole state
# ---------------------------------------------------------------------------


def mesh_enabled(doc: Mapping[str, Any] | None) -> bool:
    """``nodeToNodeMeshEnabled`` of BGPConfiguration ``default`` as calico-node
    reads it: absent document or field means on (Calico's default)."""
    if doc is None:
        return True
    value = _map(doc.get("spec"), "BGPConfiguration default", "spec").get("nodeToNodeMeshEnabled")
    if value is None:
        return True
    if not isinstance(value, bool):
        raise InputError(
            f"must be true or false, got {value!r}",
            obj="BGPConfiguration default",
            field="spec.nodeToNodeMeshEnabled",
        )
    return value


def mesh_document(
    existing: Mapping[str, Any] | None, mesh: bool, *, uid: str, now: float
) -> dict[str, Any]:
    """BGPConfiguration ``default`` with ``nodeToNodeMeshEnabled`` set to ``mesh``.

    Switching the mesh is the operator's job (as on Kubernetes, where it force-applies
    that one field): every other field of an existing document is kept.  When there is
    none, a new one is made and labelled managed-by (calico-rr created it).
    """
    if existing is None:
        return {
            "apiVersion": API_VERSION,
            "kind": "BGPConfiguration",
            "metadata": {
                "name": "default",
                "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
                "uid": uid,
                "creationTimestamp": format_timestamp(now),
            },
            "spec": {"nodeToNodeMeshEnabled": mesh},
        }
    out = dict(existing)
    spec = dict(_map(existing.get("spec"), "BGPConfiguration default", "spec"))
    spec["nodeToNodeMeshEnabled"] = mesh
    out["spec"] = spec
    return out


def node_status_from_calico(doc: Mapping[str, Any]) -> tuple[str, NodeBGPStatus]:
    """(node name, report) of a CalicoNodeStatus: has calico-node written its BGP
    status, and which IPv4 peers are Established."""
    spec = _map(doc.get("spec"), "CalicoNodeStatus", "spec")
    node = str(spec.get("node") or "")
    bgp = (doc.get("status") or {}).get("bgp")
    if not isinstance(bgp, Mapping):
        return node, NodeBGPStatus(False)
    peers = bgp.get("peersV4") or []
    up = frozenset(
        str(p.get("peerIP"))
        for p in peers
        if isinstance(p, Mapping) and p.get("state") == "Established" and p.get("peerIP")
    )
    return node, NodeBGPStatus(True, up)


def calico_state(docs: Iterable[Mapping[str, Any]], *, where: str = "etcd") -> ParsedResources:
    """Calico Nodes, BGPPeers and BGPConfigurations read from etcd as calico-node
    sees them (``core.bgp.resources.parse_resources``: the v3 shapes are the same)."""
    return parse_resources(list(docs), where=where)
