"""The objects the operator writes beside the plan's own (pure): the ``prev.``
label copies and companion BGPPeers that keep old peerings during a rollout, the
bridge BGPPeer that carries every route while the mesh is switched, and the
CalicoNodeStatus requests that report sessions (core.operator.decide's module
doc has the sequence)."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any

from calico_rr.core.bgp.selector import (
    All,
    And,
    Compare,
    Expr,
    Has,
    InSet,
    Not,
    Or,
    parse_selector,
    to_text,
)
from calico_rr.core.operator.state import (
    BRIDGE_LABEL,
    BRIDGE_NAME,
    CNS_PREFIX,
    COMPANION_LABEL,
    MARKER,
    PREV,
    PREV_SUFFIX,
)
from calico_rr.core.planning.config import OWNED_NODE_LABELS, RR_LABEL, SLOT_LABEL
from calico_rr.model import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PREFIX,
)

_EVERY_RR = f"has({RR_LABEL})"


def prev_key(key: str) -> str:
    return PREV + key


def _rewrite_keys(expr: Expr, keys: frozenset[str]) -> Expr:
    """``expr`` with every key in ``keys`` replaced by its ``prev.`` copy."""
    if isinstance(expr, Has):
        return Has(prev_key(expr.key)) if expr.key in keys else expr
    if isinstance(expr, Compare):
        return Compare(prev_key(expr.key), expr.op, expr.value) if expr.key in keys else expr
    if isinstance(expr, InSet):
        if expr.key in keys:
            return InSet(prev_key(expr.key), expr.values, expr.negated)
        return expr
    if isinstance(expr, Not):
        return Not(_rewrite_keys(expr.expr, keys))
    if isinstance(expr, And | Or):
        return type(expr)(tuple(_rewrite_keys(p, keys) for p in expr.parts))
    return expr


def companion_selector(text: str | None) -> str:
    """``(!marker && old) || (marker && old read from prev. keys)``: every node
    the old selector matched before the rollout, by the labels it had then.

    Not also the nodes the old selector matches by their *new* labels: those are
    neither old peerings nor the new layout's, and between RRs of several cluster
    IDs they multiply every node's add-path table (a switch from ``single`` to
    ``hierarchy`` peered its 12 new RRs with each other: 258,552 routes per node
    at 100 nodes; bench/bridge_fanout.py --from single)."""
    expr = parse_selector(text or "all()").expr
    if isinstance(expr, All):
        return "all()"
    now = And((Not(Has(MARKER)), expr))
    before = And((Has(MARKER), _rewrite_keys(expr, frozenset(OWNED_NODE_LABELS))))
    return to_text(Or((now, before)))


def planner_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: labels[k] for k in OWNED_NODE_LABELS if k in labels}


def prev_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith(PREV + PREFIX + "/")}


def spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def is_companion(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return COMPANION_LABEL in labels


def companion_peer(obj: Mapping[str, Any], api_group: str) -> dict[str, Any]:
    name = str(obj["metadata"]["name"])
    spec = dict(spec_of(obj))
    spec["nodeSelector"] = companion_selector(spec.get("nodeSelector"))
    if spec.get("peerSelector") is not None:
        spec["peerSelector"] = companion_selector(spec["peerSelector"])
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, COMPANION_LABEL: name[:63].rstrip("-_.")}
    return {
        "apiVersion": api_group,
        "kind": "BGPPeer",
        "metadata": {"name": name + PREV_SUFFIX, "labels": labels},
        "spec": spec,
    }


def bridge_peer(api_group: str, hubs: frozenset[str] | None = None) -> dict[str, Any]:
    """Every node peers with the bridge's hubs: the RRs in the slots ``hubs``, or
    every node carrying our RR label when ``hubs`` is None (see module doc)."""
    peers = _EVERY_RR if hubs is None else to_text(InSet(SLOT_LABEL, hubs))
    return {
        "apiVersion": api_group,
        "kind": "BGPPeer",
        "metadata": {
            "name": BRIDGE_NAME,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, BRIDGE_LABEL: "true"},
        },
        "spec": {"nodeSelector": "all()", "peerSelector": peers},
    }


def bridge_hubs(
    cids: Mapping[str, str], labels: Mapping[str, Mapping[str, str]]
) -> frozenset[str] | None:
    """The slots of the RRs the bridge peers every node with, or None for every RR.

    Why not every RR: the bridge also peers the RRs with each other, and an RR
    treats a peer of another cluster ID as its client, so under several IDs a
    route travels every chain of RRs with distinct IDs (4 IDs and 12 RRs: 2,713
    paths per prefix on every node; docs/OPERATIONS.md).  The RRs of one cluster
    ID do not reflect to each other, so a bridge to them alone carries one
    group's worth of paths.  The hubs are the RRs of the ID with the most RRs
    (at least two, so one can fail; the lowest ID of a tie: a hierarchy's
    spines); with one ID, or none with two RRs, every RR."""
    by_cid: dict[str, list[str]] = {}
    for node, cid in cids.items():
        slot = labels.get(node, {}).get(SLOT_LABEL)
        if slot is not None:
            by_cid.setdefault(cid, []).append(slot)
    if len(by_cid) < 2:
        return None
    size, _, cid = max((len(s), _neg_ip(c), c) for c, s in by_cid.items())
    return frozenset(by_cid[cid]) if size >= 2 else None


def _neg_ip(text: str) -> int:
    """Sort key putting the lowest address last (max() then picks it)."""
    try:
        return -int(ipaddress.ip_address(text))
    except ValueError:
        return 0


def bridge_hub_nodes(
    bridge: Mapping[str, Any], labels: Mapping[str, Mapping[str, str]]
) -> frozenset[str]:
    """The nodes a bridge to hubs peers every node with (its peerSelector's
    matches among ``labels``); empty for a bridge to every RR, which needs no
    order of writes."""
    peers = str(spec_of(bridge).get("peerSelector") or "all()")
    if peers == _EVERY_RR:
        return frozenset()
    selector = parse_selector(peers)
    return frozenset(node for node, node_labels in labels.items() if selector.matches(node_labels))


def is_bridge(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return BRIDGE_LABEL in labels


def cns_name(node: str) -> str:
    name = CNS_PREFIX + node
    if len(name) <= 253:
        return name
    digest = hashlib.sha1(node.encode()).hexdigest()[:10]
    return f"{name[:242]}-{digest}"


def cns_object(node: str, api_group: str) -> dict[str, Any]:
    return {
        "apiVersion": api_group,
        "kind": "CalicoNodeStatus",
        "metadata": {
            "name": cns_name(node),
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        },
        "spec": {"node": node, "classes": ["BGP"], "updatePeriodSeconds": 10},
    }
