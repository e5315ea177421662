"""Calico and Kubernetes resource dicts -> :class:`~calico_rr.model.CalicoState` (pure).

Input is what a YAML/JSON decoder gives: one resource per document, or a ``List``
(``v1/List``, ``NodeList``, ``BGPPeerList``, ...) whose ``items`` are resources.
Only what calico-node reads for BGP is kept (domain.md section 2):

* Kubernetes ``Node`` (``apiVersion: v1``): labels and the KDD annotations
  ``projectcalico.org/IPv4Address`` (CIDR), ``.../ASNumber``,
  ``.../RouteReflectorClusterID``;
* Calico ``Node`` (``projectcalico.org/v3`` or ``crd.projectcalico.org/v1``, the
  etcd datastore's view): labels and ``spec.bgp``;
* ``BGPPeer`` and ``BGPConfiguration`` of either API group (domain.md section 8).

Everything else is ignored with a note.  Bad input raises
:class:`~calico_rr.errors.InputError` naming the object and the field.

Speed matters: the planner parses its own rendered output (5000+ nodes) to verify
it, so this module reads the dicts in place (no copies, no schema library) and
checks IPv4 addresses with a hand-written dotted-quad test instead of
``ipaddress`` on the hot path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from calico_rr.core.selector import SelectorError, parse_selector
from calico_rr.errors import InputError
from calico_rr.model import (
    ANN_ASN,
    ANN_CLUSTER_ID,
    ANN_IPV4,
    BGPConfig,
    BGPPeer,
    CalicoNode,
    CalicoState,
    ReversePeering,
)

CALICO_GROUPS = frozenset({"projectcalico.org/v3", "crd.projectcalico.org/v1"})
MAX_ASN = 4294967295  # AS numbers are 32-bit (RFC 6793)


@dataclass(frozen=True, slots=True)
class ParsedResources:
    """The BGP-relevant state plus human-readable notes on what was ignored or merged."""

    state: CalicoState
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# Field helpers
# ---------------------------------------------------------------------------


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _ipv4(text: str) -> str | None:
    """``text`` if it is a canonical dotted-quad IPv4 address, else None.

    Leading zeros are rejected, as Go's ``net.ParseIP`` (and Python's ``ipaddress``)
    do, so the same address always has the same spelling: peerIP lookups compare
    strings.  A regex rather than ``ipaddress``: this runs once per node.
    """
    return text if _IPV4_RE.fullmatch(text) else None


def _cidr_address(value: object, obj: str, field: str) -> str:
    """The address part of an IPv4 ``a.b.c.d/len`` (a bare address is accepted too)."""
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", obj=obj, field=field)
    addr, slash, plen = value.partition("/")
    if slash and not (plen.isdigit() and plen.isascii() and int(plen) <= 32):
        raise InputError(f"invalid prefix length in {value!r}", obj=obj, field=field)
    if _ipv4(addr) is None:
        raise InputError(f"not an IPv4 address: {value!r}", obj=obj, field=field)
    return addr


def _asn(value: object, obj: str, field: str) -> int:
    """An AS number: an int, or a string in plain or asdot (``a.b``) form.

    Calico's ``numorstring.ASNumber`` accepts both spellings; the KDD annotation is
    necessarily a string.
    """
    asn: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        asn = value
    elif isinstance(value, str) and value.isascii():
        high, dot, low = value.partition(".")
        if not dot and high.isdigit():
            asn = int(high)
        elif dot and high.isdigit() and low.isdigit() and int(high) <= 65535 >= int(low):
            asn = int(high) * 65536 + int(low)
    if asn is None or not 0 <= asn <= MAX_ASN:
        raise InputError(
            f"AS number must be an integer in 0..{MAX_ASN}, got {value!r}", obj=obj, field=field
        )
    return asn


def _cluster_id(value: object, obj: str, field: str) -> str | None:
    """A route-reflector cluster ID: a dotted-quad IPv4 (calico-node validates it so)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or _ipv4(value) is None:
        raise InputError(
            f"route reflector cluster ID must be a dotted-quad IPv4, got {value!r}",
            obj=obj,
            field=field,
        )
    return value


def _mapping(value: object, obj: str, field: str) -> Mapping[str, Any]:
    if type(value) is dict:  # the common case, without the slow ABC isinstance check
        return value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"expected a mapping, got {type(value).__name__}", obj=obj, field=field)
    return value


def _string_map(value: object, obj: str, field: str) -> Mapping[str, str]:
    """Labels/annotations: a str -> str mapping, returned as is (no copy)."""
    m = _mapping(value, obj, field)
    # set(map(type, ...)) runs in C: this is on the per-node hot path.
    if not m or (set(map(type, m.values())) == _STR_ONLY and set(map(type, m)) == _STR_ONLY):
        return m
    for k, v in m.items():
        if type(v) is not str or type(k) is not str:
            raise InputError(f"{k!r}: value must be a string, got {v!r}", obj=obj, field=field)
    return m


_STR_ONLY = {str}


def _opt_str(value: object, obj: str, field: str) -> str | None:
    """Optional string; Calico treats ``""`` as unset."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", obj=obj, field=field)
    return value


# ---------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------


_F_IPV4 = f"metadata.annotations[{ANN_IPV4}]"
_F_ASN = f"metadata.annotations[{ANN_ASN}]"
_F_CID = f"metadata.annotations[{ANN_CLUSTER_ID}]"


def calico_node_from_k8s_dict(obj: Mapping[str, Any]) -> CalicoNode:
    """A Kubernetes Node dict as calico-node sees it in KDD mode.

    The BGP address comes from annotation ``projectcalico.org/IPv4Address`` (CIDR
    form; without it the node runs no BGP), the AS number and RR cluster ID from
    their annotations; labels are the Kubernetes node's labels (domain.md section 2).
    Only the three annotations calico-node reads are checked; the others are not
    ours to validate.
    """
    meta = _mapping(obj.get("metadata"), "Node", "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InputError("missing or not a string", obj="Node", field="metadata.name")
    where = f"Node {name}"
    labels = _string_map(meta.get("labels"), where, "metadata.labels")
    ann = _mapping(meta.get("annotations"), where, "metadata.annotations")
    ip_text = ann.get(ANN_IPV4)
    asn_text = ann.get(ANN_ASN)
    cid_text = ann.get(ANN_CLUSTER_ID)
    return CalicoNode(
        name,
        _cidr_address(ip_text, where, _F_IPV4) if ip_text else None,
        labels,
        _asn(asn_text, where, _F_ASN) if asn_text is not None and asn_text != "" else None,
        _cluster_id(cid_text, where, _F_CID) if cid_text is not None else None,
    )


def _calico_node(name: str, meta: Mapping[str, Any], obj: Mapping[str, Any]) -> CalicoNode:
    """A Calico Node resource (etcd datastore, or the v3 API): BGP fields in spec.bgp."""
    where = f"Node {name}"
    labels = _string_map(meta.get("labels"), where, "metadata.labels")
    spec = _mapping(obj.get("spec"), where, "spec")
    bgp = _mapping(spec.get("bgp"), where, "spec.bgp")
    ip_text = bgp.get("ipv4Address")
    asn_value = bgp.get("asNumber")
    return CalicoNode(
        name=name,
        ip=_cidr_address(ip_text, where, "spec.bgp.ipv4Address") if ip_text else None,
        labels=labels,
        asn=_asn(asn_value, where, "spec.bgp.asNumber") if asn_value is not None else None,
        cluster_id=_cluster_id(
            bgp.get("routeReflectorClusterID"), where, "spec.bgp.routeReflectorClusterID"
        ),
    )


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
    )


# ---------------------------------------------------------------------------
# BGPPeer
# ---------------------------------------------------------------------------


def _peer_address(value: object, where: str) -> str:
    """The address of ``peerIP``: ``ip``, ``ip:port`` or ``[v6]:port`` (Calico's forms)."""
    field = "spec.peerIP"
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", obj=where, field=field)
    addr = value
    port = ""
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise InputError(f"missing ']' in {value!r}", obj=where, field=field)
        addr, rest = value[1:close], value[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InputError(f"expected ':port' after ']' in {value!r}", obj=where, field=field)
            port = rest[1:]
            if not port:
                raise InputError(f"empty port in {value!r}", obj=where, field=field)
    elif value.count(":") == 1:
        addr, _, port = value.partition(":")
        if not port:
            raise InputError(f"empty port in {value!r}", obj=where, field=field)
    if port and not (port.isdigit() and port.isascii() and 0 < int(port) <= 65535):
        raise InputError(f"invalid port in {value!r}", obj=where, field=field)
    try:
        # Normalised spelling, so that it compares equal to a node's address.
        return str(ipaddress.ip_address(addr))
    except ValueError:
        raise InputError(f"not a valid IP address: {value!r}", obj=where, field=field) from None


def _check_selector(text: str | None, where: str, field: str) -> str | None:
    if text is None:
        return None
    try:
        parse_selector(text)
    except SelectorError as exc:
        raise InputError(str(exc), obj=where, field=field) from exc
    return text


def bgppeer_from_dict(name: str, meta: Mapping[str, Any], obj: Mapping[str, Any]) -> BGPPeer:
    """A BGPPeer of either API group (the spec is the same in both)."""
    where = f"BGPPeer {name}"
    spec = _mapping(obj.get("spec"), where, "spec")
    node = _opt_str(spec.get("node"), where, "spec.node")
    node_sel = _check_selector(
        _opt_str(spec.get("nodeSelector"), where, "spec.nodeSelector"), where, "spec.nodeSelector"
    )
    peer_sel = _check_selector(
        _opt_str(spec.get("peerSelector"), where, "spec.peerSelector"), where, "spec.peerSelector"
    )
    peer_ip_text = _opt_str(spec.get("peerIP"), where, "spec.peerIP")
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
    peer_ip = _peer_address(peer_ip_text, where) if peer_ip_text is not None else None
    asn_value = spec.get("asNumber")
    asn = _asn(asn_value, where, "spec.asNumber") if asn_value is not None else None
    if asn is not None and peer_sel is not None:
        raise InputError(
            "asNumber cannot be set together with peerSelector", obj=where, field="spec.asNumber"
        )
    reverse_text = spec.get("reversePeering")
    if reverse_text is None or reverse_text == "":
        reverse = ReversePeering.AUTO
    elif reverse_text in ("Auto", "Manual"):
        reverse = ReversePeering(reverse_text)
    else:
        raise InputError(
            f"must be Auto or Manual, got {reverse_text!r}", obj=where, field="spec.reversePeering"
        )
    password = _mapping(spec.get("password"), where, "spec.password")
    secret: tuple[str, str] | None = None
    if password:
        ref = _mapping(password.get("secretKeyRef"), where, "spec.password.secretKeyRef")
        s_name = ref.get("name")
        s_key = ref.get("key")
        if not isinstance(s_name, str) or not s_name or not isinstance(s_key, str) or not s_key:
            raise InputError(
                "needs string name and key", obj=where, field="spec.password.secretKeyRef"
            )
        secret = (s_name, s_key)
    return BGPPeer(
        name=name,
        node=node,
        node_selector=node_sel,
        peer_ip=peer_ip,
        as_number=asn,
        peer_selector=peer_sel,
        reverse_peering=reverse,
        max_restart_time=_opt_str(spec.get("maxRestartTime"), where, "spec.maxRestartTime"),
        password_secret=secret,
        labels=_string_map(meta.get("labels"), where, "metadata.labels"),
    )


# ---------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------


_Item = tuple[int, int, Any, str | None, str | None]


def _flatten(docs: Iterable[Any], where: str) -> Iterator[_Item]:
    """Every resource as (document index, item index or -1, item, kind, apiVersion).

    ``List`` items are inlined.  The API server's typed lists (``NodeList``,
    ``BGPPeerList``, ... as returned by a plain GET) leave ``kind`` and
    ``apiVersion`` off their items; like a Kubernetes client, we take them from the
    list (``NodeList`` -> ``Node``).  The generic ``List`` (``kubectl get -o yaml``)
    always spells them out, so nothing is inferred from it.
    """
    for i, doc in enumerate(docs):
        if doc is None:
            continue  # an empty YAML document ("---" at the end of a file)
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
            items = doc["items"]
            if items is None:
                continue
            if not isinstance(items, list):
                raise InputError(f"{where} item {i}: {kind} items must be a list", field="items")
            item_kind = kind[: -len("List")] or None
            api = doc.get("apiVersion") if item_kind else None
            for j, item in enumerate(items):
                yield i, j, item, item_kind, api
        else:
            yield i, -1, doc, None, None


def _label(where: str, i: int, j: int) -> str:
    """Where a document sits, for error messages (built only when one is raised)."""
    return f"{where} item {i}" if j < 0 else f"{where} item {i} items[{j}]"


def parse_resources(docs: Iterable[Any], *, where: str = "input") -> ParsedResources:
    """Read decoded resource documents into a :class:`CalicoState`.

    ``where`` names the source (a file name) in error messages.  Nodes and BGPPeers
    come out sorted by name.  Raises :class:`InputError` on a malformed document,
    an invalid field, or a name used twice within one kind.
    """
    k8s_nodes: dict[str, CalicoNode] = {}
    calico_nodes: dict[str, CalicoNode] = {}
    nodes: dict[str, CalicoNode] = {}
    peers: dict[str, BGPPeer] = {}
    configs: set[str] = set()
    config = BGPConfig()
    notes: list[str] = []

    for i, j, doc, list_kind, list_api in _flatten(docs, where):
        if type(doc) is not dict and not isinstance(doc, Mapping):
            raise InputError(f"{_label(where, i, j)}: not a mapping ({type(doc).__name__})")
        kind = doc.get("kind") or list_kind
        api = doc.get("apiVersion") or list_api
        raw_meta = doc.get("metadata")
        meta: Mapping[str, Any] = (
            raw_meta if type(raw_meta) is dict or isinstance(raw_meta, Mapping) else {}
        )
        name = meta.get("name")
        if not isinstance(kind, str) or not kind:
            raise InputError(f"{_label(where, i, j)}: missing kind", field="kind")
        if not isinstance(name, str) or not name:
            raise InputError(
                f"{_label(where, i, j)}: {kind} without metadata.name", field="metadata.name"
            )

        if kind == "Node" and (api == "v1" or api in CALICO_GROUPS):
            is_k8s = api == "v1"
            seen = k8s_nodes if is_k8s else calico_nodes
            if name in seen:
                raise InputError(
                    f"{_label(where, i, j)}: duplicate {'Kubernetes' if is_k8s else 'Calico'} Node",
                    obj=f"Node {name}",
                    field="metadata.name",
                )
            node = calico_node_from_k8s_dict(doc) if is_k8s else _calico_node(name, meta, doc)
            seen[name] = node
            earlier = nodes.get(name)
            if earlier is not None:
                node = _merge_nodes(earlier, node)
                notes.append(
                    f"Node {name} given as both Kubernetes and Calico Node: "
                    f"BGP fields of the later ({api}) document win, labels merged"
                )
            nodes[name] = node
        elif kind == "BGPPeer" and api in CALICO_GROUPS:
            if name in peers:
                raise InputError(
                    f"{_label(where, i, j)}: duplicate BGPPeer",
                    obj=f"BGPPeer {name}",
                    field="metadata.name",
                )
            peers[name] = bgppeer_from_dict(name, meta, doc)
        elif kind == "BGPConfiguration" and api in CALICO_GROUPS:
            if name in configs:
                raise InputError(
                    f"{_label(where, i, j)}: duplicate BGPConfiguration",
                    obj=f"BGPConfiguration {name}",
                    field="metadata.name",
                )
            configs.add(name)
            if name != "default":
                # Per-node configurations (node.<name>) hold no mesh/AS settings we use.
                notes.append(f"ignored BGPConfiguration {name} (only 'default' is read)")
                continue
            config = _bgp_config(doc)
        elif kind in ("Node", "BGPPeer", "BGPConfiguration"):
            notes.append(f"ignored {kind} {name} (apiVersion {api!r} is not read)")
        else:
            notes.append(f"ignored {kind} {name}")

    return ParsedResources(
        state=CalicoState(
            nodes=tuple(nodes[n] for n in sorted(nodes)),
            peers=tuple(peers[n] for n in sorted(peers)),
            config=config,
        ),
        notes=tuple(notes),
    )


def _bgp_config(doc: Mapping[str, Any]) -> BGPConfig:
    where = "BGPConfiguration default"
    spec = _mapping(doc.get("spec"), where, "spec")
    mesh = spec.get("nodeToNodeMeshEnabled")
    if mesh is None:
        mesh = True  # Calico's default: the full node-to-node mesh
    elif not isinstance(mesh, bool):
        raise InputError(
            f"must be true or false, got {mesh!r}", obj=where, field="spec.nodeToNodeMeshEnabled"
        )
    asn_value = spec.get("asNumber")
    asn = _asn(asn_value, where, "spec.asNumber") if asn_value is not None else None
    return BGPConfig(mesh_enabled=mesh, as_number=asn)
