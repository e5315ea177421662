"""What ``calico-rr doctor`` looks at: resource dicts (a ``kubectl get ... -o yaml``
``List``, or what an adapter LISTed) read into an :class:`Inventory` (pure).

It reads exactly as ``verify`` does: the same walk over the documents and the same
positions in messages (:func:`calico_rr.core.bgp.documents.iter_objects`), the same
rule for an object in both API groups
(:func:`calico_rr.core.bgp.documents.resolve_api_groups`) and the same parser for the
BGP part (:func:`calico_rr.core.bgp.resources.parse_objects`); this module only adds
IPPools, Deployments and the nodes' subnets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from calico_rr.core.bgp.documents import (
    CALICO_GROUPS,
    V1_GROUP,
    Located,
    iter_objects,
    resolve_api_groups,
)
from calico_rr.core.bgp.resources import parse_objects
from calico_rr.core.formats.fields import type_name
from calico_rr.errors import InputError, one_line, safe_repr
from calico_rr.model import ANN_IPV4, CalicoState

#: The Deployment the Typha checks look for.
TYPHA_NAME = "calico-typha"

#: Deployment spec.replicas is an int32.
INT32 = 2**31 - 1

#: A `kubectl get nodes,ippools,... -A -o yaml` command that makes a valid dump.
DUMP_COMMAND = (
    "kubectl get nodes,ippools,bgpconfigurations,bgppeers,felixconfigurations,"
    "clusterinformations,deployments -A -o yaml"
)


# ---------------------------------------------------------------------------
# The inventory
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IPPool:
    name: str
    cidr: str
    ipip_mode: str = "Never"  # Never | Always | CrossSubnet
    vxlan_mode: str = "Never"
    nat_outgoing: bool = False
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Deployment:
    namespace: str
    name: str
    replicas: int  # spec.replicas (Kubernetes' default is 1)


@dataclass(frozen=True, slots=True)
class Inventory:
    """What the doctor looks at, from a dump or a live cluster.

    ``kdd``: the Kubernetes datastore (the input holds Kubernetes Nodes).
    ``mesh_field``: BGPConfiguration ``default`` ``spec.nodeToNodeMeshEnabled`` as
    written (None: unset or no such object; Calico then uses true).
    ``subnets``: node name -> the IPv4 subnet of its BGP address, for the nodes whose
    address carries a prefix length.
    ``api_group``: the Calico API group of the input's Calico objects; both, joined by
    " + ", when it holds both (each object is read once: ``resolve_api_groups``).
    """

    state: CalicoState
    kdd: bool
    pools: tuple[IPPool, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    subnets: Mapping[str, str] = field(default_factory=dict)
    mesh_field: bool | None = None
    api_group: str | None = None
    notes: tuple[str, ...] = ()


def _spec(obj: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    spec = obj.get("spec")
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise InputError(f"must be a map, got {type_name(spec)}", obj=where, field="spec")
    return spec


_MODES = ("Never", "Always", "CrossSubnet")


def _mode(spec: Mapping[str, Any], key: str, where: str) -> str:
    value = spec.get(key)
    if value is None or value == "":
        return "Never"
    if value not in _MODES:
        raise InputError(
            f"must be one of {', '.join(_MODES)}, got {safe_repr(value)}",
            obj=where,
            field=f"spec.{key}",
        )
    return str(value)


def _flag(spec: Mapping[str, Any], key: str, where: str) -> bool:
    value = spec.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InputError(
            f"must be true or false, got {safe_repr(value)}", obj=where, field=f"spec.{key}"
        )
    return value


def _ippool(name: str, obj: Mapping[str, Any]) -> IPPool:
    where = f"IPPool {name}"
    spec = _spec(obj, where)
    cidr = spec.get("cidr")
    if not isinstance(cidr, str) or not cidr:
        raise InputError("missing or not a string", obj=where, field="spec.cidr")
    try:
        ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise InputError(f"not a CIDR: {safe_repr(cidr)}", obj=where, field="spec.cidr") from None
    return IPPool(
        name=name,
        cidr=cidr,
        ipip_mode=_mode(spec, "ipipMode", where),
        vxlan_mode=_mode(spec, "vxlanMode", where),
        nat_outgoing=_flag(spec, "natOutgoing", where),
        disabled=_flag(spec, "disabled", where),
    )


def _deployment(name: str, meta: Mapping[str, Any], obj: Mapping[str, Any]) -> Deployment:
    namespace = meta.get("namespace") or "default"
    if not isinstance(namespace, str):
        raise InputError(
            f"must be a string, got {type_name(namespace)}",
            obj=f"Deployment {name}",
            field="metadata.namespace",
        )
    where = f"Deployment {namespace}/{name}"
    replicas = _spec(obj, where).get("replicas", 1)
    if replicas is None:
        replicas = 1  # Kubernetes defaults spec.replicas to 1
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not 0 <= replicas <= INT32:
        raise InputError(
            f"must be an integer in 0..{INT32} (int32), got {safe_repr(replicas)}",
            obj=where,
            field="spec.replicas",
        )
    return Deployment(namespace, name, replicas)


def _subnet(value: object) -> str | None:
    """``10.0.3.7/24`` -> ``10.0.3.0/24``; None without a prefix length (or not IPv4)."""
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        net = ipaddress.ip_interface(value).network
    except ValueError:
        return None
    return str(net) if net.version == 4 else None


def inventory_from_documents(docs: Iterable[Any], *, where: str = "input") -> Inventory:
    """Decoded documents -> :class:`Inventory`.

    Accepts a ``List`` (``kubectl get ... -o yaml``), typed lists (``NodeList``) and
    single objects, in any mix, read as ``verify`` reads them (module docstring).
    Calico kinds of both API groups are read; the same object in both groups is read
    once, from ``crd.projectcalico.org/v1``, with a note
    (:func:`calico_rr.core.bgp.documents.resolve_api_groups`).  Kinds the doctor does
    not use are ignored with a note.  Raises InputError on a malformed object or
    when the input holds no node at all.
    """
    located = list(iter_objects(docs, where))
    present = sorted({loc.api for loc in located if loc.api in CALICO_GROUPS}, key=_group_order)
    objects, notes = resolve_api_groups(located, where=where)
    bgp: list[Located] = []
    pools: dict[str, IPPool] = {}
    deployments: list[Deployment] = []
    ignored: dict[str, int] = {}
    kdd = False
    mesh_field: bool | None = None
    subnets: dict[str, str] = {}
    for loc in objects:
        kind, api, name, meta, obj = loc.kind, loc.api, loc.name, loc.meta, loc.obj
        calico = api in CALICO_GROUPS
        if kind == "Node" and (api == "v1" or calico):
            kdd = kdd or api == "v1"
            bgp.append(loc)
            if api == "v1":
                ann = meta.get("annotations")
                raw = ann.get(ANN_IPV4) if isinstance(ann, Mapping) else None
            else:
                spec_bgp = _spec(obj, f"Node {name}").get("bgp")
                raw = spec_bgp.get("ipv4Address") if isinstance(spec_bgp, Mapping) else None
            net = _subnet(raw)
            if net is not None:
                subnets[name] = net
        elif kind in ("BGPPeer", "BGPConfiguration", "ClusterInformation") and calico:
            bgp.append(loc)  # (ClusterInformation: the release that reads the rest)
            if kind == "BGPConfiguration" and name == "default":
                value = _spec(obj, f"BGPConfiguration {name}").get("nodeToNodeMeshEnabled")
                mesh_field = value if isinstance(value, bool) else None
        elif kind == "IPPool" and calico:
            pools[name] = _ippool(name, obj)  # unique: resolve_api_groups saw to it
        elif kind == "Deployment":
            deployments.append(_deployment(name, meta, obj))
        else:
            label = f"{kind} ({api})"
            ignored[label] = ignored.get(label, 0) + 1
    parsed = parse_objects(bgp, where=where)
    if not parsed.state.nodes:
        raise InputError(
            f"{where}: no Node objects; expected the output of `{DUMP_COMMAND}` "
            "(Kubernetes Nodes, or Calico Nodes of an etcd datastore)"
        )
    notes.extend(f"ignored {n} {label}" for label, n in sorted(ignored.items()))
    notes.extend(parsed.notes)
    deployments.sort(key=lambda d: (d.namespace, d.name))
    return Inventory(
        state=parsed.state,
        kdd=kdd,
        pools=tuple(pools[n] for n in sorted(pools)),
        deployments=tuple(deployments),
        subnets=subnets,
        mesh_field=mesh_field,
        api_group=" + ".join(g for g in present if g) or None,
        notes=tuple(one_line(n) for n in notes),
    )


def _group_order(group: str | None) -> int:
    return 0 if group == V1_GROUP else 1
