"""The objects the operator writes beside the plan's own (pure): the ``prev.``
label copies and companion BGPPeers that keep old peerings during a rollout, the
bridge BGPPeer that carries every route while the mesh is switched, and the
CalicoNodeStatus requests that report sessions (core.operator.reconcile's module
doc has the sequence)."""

from __future__ import annotations

import hashlib
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
from calico_rr.core.planning.config import OWNED_NODE_LABELS, RR_LABEL
from calico_rr.model import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PREFIX,
)


def prev_key(key: str) -> str:
    return PREV + key


def is_prev_key(key: str) -> bool:
    return key.startswith(PREV + PREFIX + "/")


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
    if isinstance(expr, And):
        return And(tuple(_rewrite_keys(p, keys) for p in expr.parts))
    if isinstance(expr, Or):
        return Or(tuple(_rewrite_keys(p, keys) for p in expr.parts))
    return expr


def companion_selector(text: str | None) -> str:
    """``(old) || (marker && old read from prev. keys)``: matches every node the
    old selector matches now, plus nodes in the make state that matched it
    before their labels changed."""
    expr = parse_selector(text or "all()").expr
    if isinstance(expr, All):
        return "all()"
    prev = And((Has(MARKER), _rewrite_keys(expr, frozenset(OWNED_NODE_LABELS))))
    return to_text(Or((expr, prev)))


def planner_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: labels[k] for k in OWNED_NODE_LABELS if k in labels}


def prev_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if is_prev_key(k)}


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


def bridge_peer(api_group: str) -> dict[str, Any]:
    """Every node peers with every node carrying our RR label (see module doc)."""
    return {
        "apiVersion": api_group,
        "kind": "BGPPeer",
        "metadata": {
            "name": BRIDGE_NAME,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, BRIDGE_LABEL: "true"},
        },
        "spec": {"nodeSelector": "all()", "peerSelector": f"has({RR_LABEL})"},
    }


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


# ---------------------------------------------------------------------------
# Desired state
# ---------------------------------------------------------------------------
