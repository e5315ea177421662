"""Calico and Kubernetes resource dicts -> :class:`~calico_rr.model.CalicoState` (pure).

Input is what a YAML/JSON decoder gives: one resource per document, or a ``List``
(``v1/List``, ``NodeList``, ``BGPPeerList``, ...) whose ``items`` are resources.
Only what calico-node reads for BGP is kept (domain.md section 2):

* Kubernetes ``Node`` (``apiVersion: v1``): labels and the KDD annotations
  ``projectcalico.org/IPv4Address`` and ``.../IPv6Address`` (CIDR), ``.../ASNumber``,
  ``.../RouteReflectorClusterID``;
* Calico ``Node`` (``projectcalico.org/v3`` or ``crd.projectcalico.org/v1``, the
  etcd datastore's view): labels and ``spec.bgp``;
* ``BGPPeer`` and ``BGPConfiguration`` of either API group (domain.md section 8);
  the same object listed in both groups is read once
  (:func:`~calico_rr.core.bgp.documents.resolve_api_groups`).

Objects are named by their place in the input (``item 3 of f.yaml``, 1-based;
:mod:`calico_rr.core.bgp.documents`), the labelling every command shares; field
values are checked by :mod:`calico_rr.core.bgp.calico_fields`.

Everything else is ignored with a note.  Bad input raises
:class:`~calico_rr.errors.InputError` naming the object and the field.

Speed matters: the planner parses its own rendered output (5000+ nodes) to verify
it, so this module reads the dicts in place (no copies, no schema library) and
checks IPv4 addresses with a hand-written dotted-quad test instead of
``ipaddress`` on the hot path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from calico_rr.core.bgp import calico_fields as F
from calico_rr.core.bgp.calico_version import REVERSE_PEERING_SINCE, CalicoVersion, reading_release
from calico_rr.core.bgp.documents import CALICO_GROUPS, Located, iter_objects, resolve_api_groups
from calico_rr.core.formats.fields import duplicate, mapping, string_map
from calico_rr.core.values import cluster_id
from calico_rr.errors import InputError, one_line, safe_repr
from calico_rr.model import (
    ANN_ASN,
    ANN_CLUSTER_ID,
    ANN_IPV4,
    ANN_IPV6,
    BGPConfig,
    BGPPeer,
    CalicoNode,
    CalicoState,
    ReversePeering,
)


@dataclass(frozen=True, slots=True)
class ParsedResources:
    """The BGP-relevant state plus human-readable notes on what was ignored or merged."""

    state: CalicoState
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------


# Field paths spelt as core.formats.kube spells them, so both name a field the same way.
_F_IPV4 = f'metadata.annotations["{ANN_IPV4}"]'
_F_IPV6 = f'metadata.annotations["{ANN_IPV6}"]'
_F_ASN = f'metadata.annotations["{ANN_ASN}"]'
_F_CID = f'metadata.annotations["{ANN_CLUSTER_ID}"]'


def calico_node_from_k8s_dict(obj: Mapping[str, Any]) -> CalicoNode:
    """A Kubernetes Node dict as calico-node sees it in KDD mode.

    The BGP addresses come from annotations ``projectcalico.org/IPv4Address`` and
    ``projectcalico.org/IPv6Address`` (CIDR form; without either the node runs no
    BGP), the AS number and RR cluster ID from
    their annotations; labels are the Kubernetes node's labels (domain.md section 2).
    Only the four annotations calico-node reads are checked; the others are not
    ours to validate.
    """
    meta = mapping(obj.get("metadata"), "Node", "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InputError("missing or not a string", obj="Node", field="metadata.name")
    where = f"Node {name}"
    labels = string_map(meta.get("labels"), where, "metadata.labels")
    ann = mapping(meta.get("annotations"), where, "metadata.annotations")
    ip_text = ann.get(ANN_IPV4)
    ip6_text = ann.get(ANN_IPV6)
    asn_text = ann.get(ANN_ASN)
    return CalicoNode(
        name,
        F.cidr_address(ip_text, where, _F_IPV4) if ip_text else None,
        labels,
        F.asn(asn_text, where, _F_ASN) if asn_text is not None and asn_text != "" else None,
        cluster_id(ann.get(ANN_CLUSTER_ID), obj=where, field=_F_CID),
        F.cidr_address6(ip6_text, where, _F_IPV6) if ip6_text else None,
    )


def _calico_node(name: str, meta: Mapping[str, Any], obj: Mapping[str, Any]) -> CalicoNode:
    """A Calico Node resource (etcd datastore, or the v3 API): BGP fields in spec.bgp."""
    where = f"Node {name}"
    labels = string_map(meta.get("labels"), where, "metadata.labels")
    spec = mapping(obj.get("spec"), where, "spec")
    bgp = mapping(spec.get("bgp"), where, "spec.bgp")
    ip_text = bgp.get("ipv4Address")
    ip6_text = bgp.get("ipv6Address")
    asn_value = bgp.get("asNumber")
    return CalicoNode(
        name=name,
        ip=F.cidr_address(ip_text, where, "spec.bgp.ipv4Address") if ip_text else None,
        ip6=F.cidr_address6(ip6_text, where, "spec.bgp.ipv6Address") if ip6_text else None,
        labels=labels,
        asn=F.asn(asn_value, where, "spec.bgp.asNumber") if asn_value is not None else None,
        cluster_id=cluster_id(
            bgp.get("routeReflectorClusterID"), obj=where, field="spec.bgp.routeReflectorClusterID"
        ),
    )


def _read_node(loc: Located, k8s_seen: dict[str, Located], where: str) -> CalicoNode:
    """A Kubernetes (``v1``) or Calico Node; a Kubernetes Node given twice is an error."""
    if loc.api != "v1":
        # Calico Nodes are unique by name here: resolve_api_groups saw to it.
        return _calico_node(loc.name, loc.meta, loc.obj)
    first = k8s_seen.get(loc.name)
    if first is not None:
        raise duplicate(
            "Kubernetes Node", first.label(where), loc.label(where), obj=f"Node {loc.name}"
        )
    k8s_seen[loc.name] = loc
    return calico_node_from_k8s_dict(loc.obj)


def _merge_nodes(first: CalicoNode, later: CalicoNode) -> CalicoNode:
    """The same node seen as Kubernetes Node and as Calico Node.

    The later document wins each BGP field it sets (a field it leaves unset keeps
    the earlier value); labels are the union, the later document winning a clash.
    """
    labels = {**first.labels, **later.labels} if first.labels else later.labels
    return CalicoNode(
        name=later.name,
        ip=later.ip if later.ip is not None else first.ip,
        labels=labels,
        asn=later.asn if later.asn is not None else first.asn,
        cluster_id=later.cluster_id if later.cluster_id is not None else first.cluster_id,
        ip6=later.ip6 if later.ip6 is not None else first.ip6,
    )


# ---------------------------------------------------------------------------
# BGPPeer and BGPConfiguration
# ---------------------------------------------------------------------------


def _reverse_peering(value: object, where: str) -> ReversePeering:
    if value is None or value == "":
        return ReversePeering.AUTO
    if value in ("Auto", "Manual"):
        return ReversePeering(value)
    raise InputError(
        f"must be Auto or Manual, got {safe_repr(value)}", obj=where, field="spec.reversePeering"
    )


def _password_secret(spec: Mapping[str, Any], where: str) -> tuple[str, str] | None:
    """(secret name, key) of ``spec.password.secretKeyRef``, None without a password."""
    password = mapping(spec.get("password"), where, "spec.password")
    if not password:
        return None
    field = "spec.password.secretKeyRef"
    ref = mapping(password.get("secretKeyRef"), where, field)
    name, key = ref.get("name"), ref.get("key")
    if not isinstance(name, str) or not name or not isinstance(key, str) or not key:
        raise InputError("needs string name and key", obj=where, field=field)
    return name, key


def bgppeer_from_dict(name: str, meta: Mapping[str, Any], obj: Mapping[str, Any]) -> BGPPeer:
    """A BGPPeer of either API group (the spec is the same in both)."""
    where = f"BGPPeer {name}"
    spec = mapping(obj.get("spec"), where, "spec")
    node = F.opt_str(spec.get("node"), where, "spec.node")
    node_sel = F.selector(spec.get("nodeSelector"), where, "spec.nodeSelector")
    peer_sel = F.selector(spec.get("peerSelector"), where, "spec.peerSelector")
    peer_ip_text = F.opt_str(spec.get("peerIP"), where, "spec.peerIP")
    # Calico's validator: local side is node XOR nodeSelector XOR neither; remote side
    # is exactly one of peerIP / peerSelector; asNumber belongs to peerIP peerings
    # (a selected Calico node brings its own AS number).
    if node is not None and node_sel is not None:
        raise InputError("node and nodeSelector are both set", obj=where, field="spec.nodeSelector")
    if peer_ip_text is not None and peer_sel is not None:
        raise InputError("peerIP and peerSelector are both set", obj=where, field="spec.peerIP")
    if peer_ip_text is None and peer_sel is None:
        raise InputError(
            "one of peerIP or peerSelector is required", obj=where, field="spec.peerIP"
        )
    peer_ip = F.peer_address(peer_ip_text, where) if peer_ip_text is not None else None
    asn_value = spec.get("asNumber")
    asn = F.asn(asn_value, where, "spec.asNumber") if asn_value is not None else None
    if asn is not None and peer_sel is not None:
        raise InputError(
            "asNumber cannot be set together with peerSelector", obj=where, field="spec.asNumber"
        )
    reverse = _reverse_peering(spec.get("reversePeering"), where)
    secret = _password_secret(spec, where)
    return BGPPeer(
        name=name,
        node=node,
        node_selector=node_sel,
        peer_ip=peer_ip,
        as_number=asn,
        peer_selector=peer_sel,
        reverse_peering=reverse,
        max_restart_time=F.opt_str(spec.get("maxRestartTime"), where, "spec.maxRestartTime"),
        password_secret=secret,
        labels=string_map(meta.get("labels"), where, "metadata.labels"),
    )


def _as_read_by(peer: BGPPeer, calico: CalicoVersion | None, notes: list[str]) -> BGPPeer:
    """``peer`` as the Calico release ``calico`` reads it; what it drops, in ``notes``."""
    if (
        calico is not None
        and peer.reverse_peering is ReversePeering.MANUAL
        and not calico.honours_reverse_peering()
    ):
        notes.append(
            f"BGPPeer {peer.name}: reversePeering Manual is ignored by Calico {calico} "
            f"(the field exists from {REVERSE_PEERING_SINCE}): the selected nodes peer back"
        )
        return dataclasses.replace(peer, reverse_peering=ReversePeering.AUTO)
    return peer


def _bgp_config(doc: Mapping[str, Any]) -> BGPConfig:
    where = "BGPConfiguration default"
    spec = mapping(doc.get("spec"), where, "spec")
    asn_value = spec.get("asNumber")
    return BGPConfig(
        mesh_enabled=F.node_to_node_mesh(spec, where),
        as_number=F.asn(asn_value, where, "spec.asNumber") if asn_value is not None else None,
    )


# ---------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------


def parse_resources(
    docs: Iterable[Any], *, where: str = "input", calico: CalicoVersion | None = None
) -> ParsedResources:
    """Read decoded resource documents into a :class:`CalicoState`, as the Calico
    release ``calico`` reads them (None: the release a ClusterInformation
    ``default`` among the documents records, else the newest;
    ``core.bgp.calico_version.reading_release``).

    ``where`` names the source (a file name) in error messages.  Nodes and BGPPeers
    come out sorted by name.  Raises :class:`InputError` on a malformed document,
    an invalid field, or a name used twice within one kind (see
    :func:`~calico_rr.core.bgp.documents.resolve_api_groups` for the same object in
    both API groups).
    """
    return parse_objects(iter_objects(docs, where), where=where, calico=calico)


def parse_objects(
    objects: Iterable[Located], *, where: str = "input", calico: CalicoVersion | None = None
) -> ParsedResources:
    """:func:`parse_resources` on objects already located by
    :func:`~calico_rr.core.bgp.documents.iter_objects` (``doctor`` picks the BGP ones
    out of a larger dump; positions stay those of the whole input).  Applies
    :func:`~calico_rr.core.bgp.documents.resolve_api_groups` first."""
    resolved, notes = resolve_api_groups(objects, where=where)
    k8s_seen: dict[str, Located] = {}
    nodes: dict[str, CalicoNode] = {}
    peers: dict[str, BGPPeer] = {}
    config = BGPConfig()
    info = next((loc.obj for loc in resolved if _is_cluster_info(loc)), None)
    calico, release_note = reading_release(calico, info)
    if release_note is not None:
        notes.append(release_note)

    for loc in resolved:
        kind, api, name = loc.kind, loc.api, loc.name
        if kind == "Node" and (api == "v1" or api in CALICO_GROUPS):
            node = _read_node(loc, k8s_seen, where)
            earlier = nodes.get(name)
            if earlier is not None:
                node = _merge_nodes(earlier, node)
                notes.append(
                    f"Node {name} given as both Kubernetes and Calico Node: "
                    f"BGP fields of the later ({api}) document win, labels merged"
                )
            nodes[name] = node
        elif kind == "BGPPeer" and api in CALICO_GROUPS:
            peers[name] = _as_read_by(bgppeer_from_dict(name, loc.meta, loc.obj), calico, notes)
        elif kind == "BGPConfiguration" and api in CALICO_GROUPS:
            if name == "default":
                config = _bgp_config(loc.obj)
            else:
                # Per-node configurations (node.<name>) hold no mesh/AS settings we use.
                notes.append(f"ignored BGPConfiguration {name} (only 'default' is read)")
        elif _is_cluster_info(loc):
            continue  # read above: the release to read as
        elif kind in ("Node", "BGPPeer", "BGPConfiguration"):
            notes.append(f"ignored {kind} {name} (apiVersion {safe_repr(api)} is not read)")
        else:
            notes.append(f"ignored {kind} {name}")

    return ParsedResources(
        state=CalicoState(
            nodes=tuple(nodes[n] for n in sorted(nodes)),
            peers=tuple(peers[n] for n in sorted(peers)),
            config=config,
        ),
        notes=tuple(one_line(n) for n in notes),
    )


def _is_cluster_info(loc: Located) -> bool:
    return loc.kind == "ClusterInformation" and loc.api in CALICO_GROUPS and loc.name == "default"
