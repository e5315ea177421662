"""Calico and Kubernetes resource dicts -> :class:`~calico_rr.model.CalicoState` (pure).

Input is what a YAML/JSON decoder gives: one resource per document, or a ``List``
(``v1/List``, ``NodeList``, ``BGPPeerList``, ...) whose ``items`` are resources.
Only what calico-node reads for BGP is kept (domain.md section 2):

* Kubernetes ``Node`` (``apiVersion: v1``): labels and the KDD annotations
  ``projectcalico.org/IPv4Address`` (CIDR), ``.../ASNumber``,
  ``.../RouteReflectorClusterID``;
* Calico ``Node`` (``projectcalico.org/v3`` or ``crd.projectcalico.org/v1``, the
  etcd datastore's view): labels and ``spec.bgp``;
* ``BGPPeer`` and ``BGPConfiguration`` of either API group (domain.md section 8);
  the same object listed in both groups is read once (:func:`resolve_api_groups`).

Objects are named by their place in the input with :func:`calico_rr.core.formats.kube.position`
(``item 3 of f.yaml``, 1-based), the labelling every command shares.

Everything else is ignored with a note.  Bad input raises
:class:`~calico_rr.errors.InputError` naming the object and the field.

Speed matters: the planner parses its own rendered output (5000+ nodes) to verify
it, so this module reads the dicts in place (no copies, no schema library) and
checks IPv4 addresses with a hand-written dotted-quad test instead of
``ipaddress`` on the hot path.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from calico_rr.core.bgp.calico_version import REVERSE_PEERING_SINCE, CalicoVersion, reading_release
from calico_rr.core.bgp.selector import SelectorError, parse_selector
from calico_rr.core.formats.kube import check_string_map, position, type_name
from calico_rr.core.values import cluster_id as parse_cluster_id
from calico_rr.core.values import is_dotted_quad
from calico_rr.errors import InputError, one_line, safe_repr
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

V1_GROUP = "crd.projectcalico.org/v1"
V3_GROUP = "projectcalico.org/v3"
CALICO_GROUPS = frozenset({V3_GROUP, V1_GROUP})
MAX_ASN = 4294967295  # AS numbers are 32-bit (RFC 6793)


@dataclass(frozen=True, slots=True)
class ParsedResources:
    """The BGP-relevant state plus human-readable notes on what was ignored or merged."""

    state: CalicoState
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# Field helpers
# ---------------------------------------------------------------------------


def _decimal(text: str) -> int | None:
    """``text`` as a non-negative decimal integer, or None unless it is 1 to 10 ASCII
    digits: no number read here (AS, prefix length, port) needs more, and ``int()``
    of a digit string of thousands of characters raises."""
    if 0 < len(text) <= 10 and text.isascii() and text.isdigit():
        return int(text)
    return None


def _cidr_address(value: object, obj: str, field: str) -> str:
    """The address part of an IPv4 ``a.b.c.d/len`` (a bare address is accepted too)."""
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", obj=obj, field=field)
    addr, slash, plen = value.partition("/")
    length = _decimal(plen)
    if slash and (length is None or length > 32):
        raise InputError(f"invalid prefix length in {safe_repr(value)}", obj=obj, field=field)
    if not is_dotted_quad(addr):
        raise InputError(f"not an IPv4 address: {safe_repr(value)}", obj=obj, field=field)
    return addr


def _asn(value: object, obj: str, field: str) -> int:
    """An AS number: an int, or a string in plain or asdot (``a.b``) form.

    Calico's ``numorstring.ASNumber`` accepts both spellings; the KDD annotation is
    necessarily a string.
    """
    asn: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        asn = value
    elif isinstance(value, str):
        high, dot, low = value.partition(".")
        if not dot:
            asn = _decimal(high)
        else:
            h, lo = _decimal(high), _decimal(low)
            if h is not None and lo is not None and h <= 65535 >= lo:
                asn = h * 65536 + lo
    if asn is None or not 0 <= asn <= MAX_ASN:
        raise InputError(
            f"AS number must be an integer in 0..{MAX_ASN}, got {safe_repr(value)}",
            obj=obj,
            field=field,
        )
    return asn


def _cluster_id(value: object, obj: str, field: str) -> str | None:
    """A route-reflector cluster ID (calico-node validates it as an IPv4 address)."""
    return parse_cluster_id(value, obj=obj, field=field)


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
    check_string_map(m, obj, field)  # raises on the first non-string, as core.formats.kube does
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


# Field paths spelt as core.formats.kube spells them, so both name a field the same way.
_F_IPV4 = f'metadata.annotations["{ANN_IPV4}"]'
_F_ASN = f'metadata.annotations["{ANN_ASN}"]'
_F_CID = f'metadata.annotations["{ANN_CLUSTER_ID}"]'


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
            raise InputError(f"missing ']' in {safe_repr(value)}", obj=where, field=field)
        addr, rest = value[1:close], value[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InputError(
                    f"expected ':port' after ']' in {safe_repr(value)}", obj=where, field=field
                )
            port = rest[1:]
            if not port:
                raise InputError(f"empty port in {safe_repr(value)}", obj=where, field=field)
    elif value.count(":") == 1:
        addr, _, port = value.partition(":")
        if not port:
            raise InputError(f"empty port in {safe_repr(value)}", obj=where, field=field)
    number = _decimal(port)
    if port and (number is None or not 0 < number <= 65535):
        raise InputError(f"invalid port in {safe_repr(value)}", obj=where, field=field)
    try:
        # Normalised spelling, so that it compares equal to a node's address.
        return str(ipaddress.ip_address(addr))
    except ValueError:
        raise InputError(
            f"not a valid IP address: {safe_repr(value)}", obj=where, field=field
        ) from None


def _check_selector(text: str | None, where: str, field: str) -> str | None:
    if text is None:
        return None
    try:
        parse_selector(text)
    except SelectorError as exc:
        raise InputError(str(exc), obj=where, field=field) from exc
    except RecursionError:
        raise InputError(
            f"selector nested too deeply ({len(text)} characters)", obj=where, field=field
        ) from None
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
            f"must be Auto or Manual, got {safe_repr(reverse_text)}",
            obj=where,
            field="spec.reversePeering",
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


class Located(NamedTuple):
    """One object of the input, with where it sits and what every reader needs first.

    ``document`` counts the decoded documents from 1 (empty ``---`` documents
    count); ``item`` counts the items of a ``List`` document from 1, 0 when the
    document is the object itself.  :meth:`label` names the place in words with
    :func:`calico_rr.core.formats.kube.position`, the one labelling every command uses.
    """

    document: int
    item: int
    obj: Mapping[str, Any]
    kind: str
    #: ``apiVersion`` as written, or the typed list's (None: absent)
    api: str | None
    name: str
    meta: Mapping[str, Any]

    def label(self, where: str) -> str:
        return position(where, self.document, self.item)


_NO_META: Mapping[str, Any] = {}


def _locate(
    item: object, d: int, j: int, list_kind: str | None, list_api: object, where: str
) -> Located:
    if type(item) is not dict and not isinstance(item, Mapping):
        what = "a Kubernetes object" if j else "a Kubernetes object or List"
        raise InputError(f"expected {what}, got {type_name(item)}", obj=position(where, d, j))
    kind = item.get("kind") or list_kind
    api = item.get("apiVersion") or list_api
    raw_meta = item.get("metadata")
    meta = raw_meta if type(raw_meta) is dict or isinstance(raw_meta, Mapping) else _NO_META
    name = meta.get("name")
    if (
        type(kind) is str
        and kind
        and (api is None or type(api) is str)
        and type(name) is str
        and name
    ):
        return Located(d, j, item, kind, api, name, meta)
    # Slow path: say what is wrong (or accept str/Mapping subclasses).
    label = position(where, d, j)
    if not isinstance(kind, str) or not kind:
        what = "missing" if kind is None else f"must be a string, got {safe_repr(kind)}"
        raise InputError(what, obj=label, field="kind")
    if api is not None and not isinstance(api, str):
        raise InputError(f"must be a string, got {safe_repr(api)}", obj=label, field="apiVersion")
    if raw_meta is not None and meta is _NO_META:
        raise InputError(f"must be a map, got {type_name(raw_meta)}", obj=label, field="metadata")
    if not isinstance(name, str) or not name:
        what = (
            f"{kind} without a name"
            if name is None
            else f"must be a non-empty string, got {safe_repr(name)}"
        )
        raise InputError(what, obj=label, field="metadata.name")
    return Located(d, j, item, kind, api, name, meta)


def iter_objects(docs: Iterable[Any], where: str) -> Iterator[Located]:
    """Every object of decoded documents, ``List`` items inlined, in input order.

    A document is an object, a ``List`` (``kubectl get -o yaml``), a typed list
    (``NodeList``, ``BGPPeerList``, ... as a plain GET returns it) or ``None`` (an
    empty YAML document, skipped).  Items of a typed list may leave ``kind`` and
    ``apiVersion`` off; like a Kubernetes client, we take them from the list
    (``NodeList`` -> ``Node``).  The generic ``List`` always spells them out, so
    nothing is inferred from it.

    Raises :class:`InputError`, naming the place (:meth:`Located.label`), for
    anything that is not a Kubernetes object with a kind and a name.  ``verify``
    (:func:`parse_resources`) and ``doctor`` read their input through this one
    function, so both refuse the same inputs with the same words.
    """
    for d, doc in enumerate(docs, 1):
        if doc is None:
            continue
        kind = doc.get("kind") if isinstance(doc, Mapping) else None
        if isinstance(kind, str) and kind.endswith("List"):
            items = doc.get("items")
            if items is None:
                continue
            if not isinstance(items, list):
                raise InputError(
                    f"must be a list, got {type_name(items)}", obj=position(where, d), field="items"
                )
            item_kind = kind[: -len("List")] or None
            api = doc.get("apiVersion") if item_kind else None
            for j, item in enumerate(items, 1):
                yield _locate(item, d, j, item_kind, api, where)
        else:
            yield _locate(doc, d, 0, None, None, where)


def _same_spec(a: Located, b: Located) -> bool:
    try:
        return bool((a.obj.get("spec") or {}) == (b.obj.get("spec") or {}))
    except RecursionError:  # absurdly nested specs: call them different
        return False


def resolve_api_groups(
    objects: Iterable[Located], *, where: str
) -> tuple[list[Located], list[str]]:
    """The Calico objects of the input, each once: the rule for both API groups.

    Calico objects come in two API groups (domain.md section 8), and a dump may hold
    both: with calico-apiserver installed, ``kubectl get bgppeers.projectcalico.org``
    lists the very objects stored as ``crd.projectcalico.org/v1`` CRDs, projected.
    The rule, one for every reader of Calico resources (``verify``, ``doctor``, the
    ``plan`` figures, the operator's safety check):

    * the same kind and name (and namespace) in both groups is **one object**, and
      the ``crd.projectcalico.org/v1`` copy is the one read: Calico's own precedence
      (v3 only when that group is served and ``crd.projectcalico.org`` is not) and
      what calico-node reads (its confd reads the v1 CRDs);  the v3 copy is dropped
      with a note, which says whether the two specs agree.  Differing specs are not
      an error: they describe a cluster calico-node still reads one way (a dump taken
      at two moments, or both CRD sets installed side by side), and the note says
      which copy counts;
    * an object in one group only is read as it is;
    * the same kind and name twice in *one* group is an error naming both places
      (no API server returns that: the dump was pieced together by hand).

    Objects of other API groups (Kubernetes Nodes, Deployments, ...) pass through
    untouched; so does the input order of the objects kept.
    """
    kept: list[Located | None] = []
    notes: list[str] = []
    seen: dict[tuple[str, str, str], dict[str, tuple[int, Located]]] = {}
    for loc in objects:
        api = loc.api
        if api not in CALICO_GROUPS:
            kept.append(loc)
            continue
        namespace = loc.meta.get("namespace")
        ns = namespace if isinstance(namespace, str) else ""
        what = f"{loc.kind} {ns}/{loc.name}" if ns else f"{loc.kind} {loc.name}"
        copies = seen.setdefault((loc.kind, ns, loc.name), {})
        first = copies.get(api)
        if first is not None:
            raise InputError(
                f"duplicate {loc.kind} (first seen as {first[1].label(where)}, "
                f"again as {loc.label(where)})",
                obj=what,
                field="metadata.name",
            )
        copies[api] = (len(kept), loc)
        kept.append(loc)
        if len(copies) == 2:
            (_, v1), (v3_at, v3) = copies[V1_GROUP], copies[V3_GROUP]
            kept[v3_at] = None
            agree = (
                "same spec"
                if _same_spec(v1, v3)
                else "their specs differ (a dump taken at two moments?): only the "
                f"{V1_GROUP} one counts"
            )
            notes.append(
                f"{what} is in both API groups ({V1_GROUP} at {v1.label(where)}, {V3_GROUP} "
                f"at {v3.label(where)}): one object, read from {V1_GROUP} as calico-node "
                f"does; {agree}"
            )
    return [loc for loc in kept if loc is not None], notes


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
    :func:`resolve_api_groups` for the same object in both API groups).
    """
    return parse_objects(iter_objects(docs, where), where=where, calico=calico)


def parse_objects(
    objects: Iterable[Located], *, where: str = "input", calico: CalicoVersion | None = None
) -> ParsedResources:
    """:func:`parse_resources` on objects already located by :func:`iter_objects`
    (``doctor`` picks the BGP ones out of a larger dump; positions stay those of
    the whole input).  Applies :func:`resolve_api_groups` first."""
    resolved, group_notes = resolve_api_groups(objects, where=where)
    k8s_seen: dict[str, Located] = {}
    nodes: dict[str, CalicoNode] = {}
    peers: dict[str, BGPPeer] = {}
    config = BGPConfig()
    notes: list[str] = list(group_notes)
    info = next((loc.obj for loc in resolved if _is_cluster_info(loc)), None)
    calico, release_note = reading_release(calico, info)
    if release_note is not None:
        notes.append(release_note)

    for loc in resolved:
        kind, api, name, doc = loc.kind, loc.api, loc.name, loc.obj
        if kind == "Node" and (api == "v1" or api in CALICO_GROUPS):
            if api == "v1":
                first = k8s_seen.get(name)
                if first is not None:
                    raise InputError(
                        f"duplicate Kubernetes Node (first seen as {first.label(where)}, "
                        f"again as {loc.label(where)})",
                        obj=f"Node {name}",
                        field="metadata.name",
                    )
                k8s_seen[name] = loc
                node = calico_node_from_k8s_dict(doc)
            else:
                # Calico Nodes are unique by name here: resolve_api_groups saw to it.
                node = _calico_node(name, loc.meta, doc)
            earlier = nodes.get(name)
            if earlier is not None:
                node = _merge_nodes(earlier, node)
                notes.append(
                    f"Node {name} given as both Kubernetes and Calico Node: "
                    f"BGP fields of the later ({api}) document win, labels merged"
                )
            nodes[name] = node
        elif kind == "BGPPeer" and api in CALICO_GROUPS:
            peer = bgppeer_from_dict(name, loc.meta, doc)
            peers[name] = _as_read_by(peer, calico, notes)
        elif kind == "BGPConfiguration" and api in CALICO_GROUPS:
            if name != "default":
                # Per-node configurations (node.<name>) hold no mesh/AS settings we use.
                notes.append(f"ignored BGPConfiguration {name} (only 'default' is read)")
                continue
            config = _bgp_config(doc)
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
    spec = _mapping(doc.get("spec"), where, "spec")
    mesh = spec.get("nodeToNodeMeshEnabled")
    if mesh is None:
        mesh = True  # Calico's default: the full node-to-node mesh
    elif not isinstance(mesh, bool):
        raise InputError(
            f"must be true or false, got {safe_repr(mesh)}",
            obj=where,
            field="spec.nodeToNodeMeshEnabled",
        )
    asn_value = spec.get("asNumber")
    asn = _asn(asn_value, where, "spec.asNumber") if asn_value is not None else None
    return BGPConfig(mesh_enabled=mesh, as_number=asn)
