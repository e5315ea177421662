"""Calico's etcd datastore layout and its documents <-> the core's data (pure).

In the etcdv3 datastore (domain.md section 8) every Calico resource is one JSON
document (``apiVersion: projectcalico.org/v3``, kind, metadata, spec) stored under

    /calico/resources/v3/projectcalico.org/<plural>/<name>

for cluster-scoped kinds (``nodes``, ``bgppeers``, ``bgpconfigurations``,
``caliconodestatuses``, ...).  Calico stores the document without
``metadata.resourceVersion`` and, when reading, fills it in from the key's etcd
mod revision; :func:`decode_document` does the same.

Calico Node documents (their BGP fields, their health, and the record of the node
fields calico-rr owns) are read and written by :mod:`calico_rr.core.formats.etcd_nodes`.

Ownership (the same marks as on Kubernetes)
-------------------------------------------
Objects calico-rr creates (BGPPeers, CalicoNodeStatus, a BGPConfiguration it had to
create) carry ``app.kubernetes.io/managed-by: calico-rr``; only those are ever
changed or deleted (:func:`is_managed`, :func:`managed_document`).  A write that
would change what someone else set raises :class:`OwnershipConflict`.

Nothing here does I/O; adapters/etcd reads and writes the bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from calico_rr.core.bgp.calico_fields import node_to_node_mesh
from calico_rr.core.formats.fields import mapping, string_map
from calico_rr.core.formats.scalars import established_peers, format_timestamp
from calico_rr.core.operator.state import NodeBGPStatus
from calico_rr.errors import InputError
from calico_rr.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE

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


def check_name(name: str, what: str) -> None:
    """Raise InputError unless ``name`` is a valid resource name (no '/' above all)."""
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
    check_name(name, f"{KINDS.get(plural, plural)} {name!r}")
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


# ---------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------


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
    meta = mapping(doc.get("metadata"), kind, "metadata")
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
    meta_in = mapping(obj.get("metadata"), str(kind), "metadata")
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
    old_meta = mapping((existing or {}).get("metadata"), where, "metadata")
    labels = dict(string_map(meta_in.get("labels"), where, "metadata.labels"))
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if meta_in.get("annotations"):
        meta["annotations"] = dict(meta_in["annotations"])
    meta["uid"] = old_meta.get("uid") or uid
    meta["creationTimestamp"] = old_meta.get("creationTimestamp") or format_timestamp(now)
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": meta,
        "spec": dict(mapping(obj.get("spec"), where, "spec")),
    }
    status = (existing or {}).get("status")
    if status is not None:
        doc["status"] = status
    encode_document(doc)  # validates kind and name
    return doc


# ---------------------------------------------------------------------------
# BGPConfiguration, CalicoNodeStatus, the whole state
# ---------------------------------------------------------------------------


def mesh_enabled(doc: Mapping[str, Any] | None) -> bool:
    """``nodeToNodeMeshEnabled`` of BGPConfiguration ``default`` as calico-node
    reads it: absent document or field means on (Calico's default)."""
    if doc is None:
        return True
    where = "BGPConfiguration default"
    return node_to_node_mesh(mapping(doc.get("spec"), where, "spec"), where)


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
    spec = dict(mapping(existing.get("spec"), "BGPConfiguration default", "spec"))
    spec["nodeToNodeMeshEnabled"] = mesh
    out["spec"] = spec
    return out


def node_status_from_calico(doc: Mapping[str, Any]) -> tuple[str, NodeBGPStatus]:
    """(node name, report) of a CalicoNodeStatus: has calico-node written its BGP
    status, and which peers (IPv4 and IPv6) are Established."""
    spec = mapping(doc.get("spec"), "CalicoNodeStatus", "spec")
    node = str(spec.get("node") or "")
    bgp = (doc.get("status") or {}).get("bgp")
    if not isinstance(bgp, Mapping):
        return node, NodeBGPStatus(False)
    return node, NodeBGPStatus(True, established_peers(bgp))
