"""Pure helpers of the operator adapter (no API server)."""

from __future__ import annotations

from typing import Any

from calico_rr.adapters.kube.operator import choose_api_group, node_state, owned_fields
from calico_rr.adapters.kube.ports import node_bgp_status


def test_api_group_follows_calicos_rule() -> None:
    assert choose_api_group({"projectcalico.org"}) == "projectcalico.org/v3"
    assert choose_api_group({"projectcalico.org", "crd.projectcalico.org"}) == (
        "crd.projectcalico.org/v1"
    )
    assert choose_api_group({"crd.projectcalico.org"}) == "crd.projectcalico.org/v1"
    assert choose_api_group(set()) == "crd.projectcalico.org/v1"


def managed(
    manager: str, operation: str, labels: list[str], annotations: list[str]
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if labels:
        meta["f:labels"] = {f"f:{k}": {} for k in labels}
    if annotations:
        meta["f:annotations"] = {f"f:{k}": {} for k in annotations}
    return {
        "manager": manager,
        "operation": operation,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": meta},
    }


def node(**meta: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "n1",
        "labels": {"calico-rr.io/group": "g1", "team": "blue"},
        "annotations": {"projectcalico.org/IPv4Address": "10.0.0.1/24"},
    }
    base.update(meta)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": base,
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_owned_fields_only_our_apply_entries() -> None:
    obj = node(
        managedFields=[
            managed(
                "calico-rr",
                "Apply",
                ["calico-rr.io/group"],
                ["projectcalico.org/RouteReflectorClusterID"],
            ),
            managed("kubectl", "Update", ["team"], []),
            managed("calico-rr", "Update", ["other"], []),  # not an apply: not ours to prune
        ]
    )
    labels, annotations = owned_fields(obj, "calico-rr")
    assert labels == {"calico-rr.io/group"}
    assert annotations == {"projectcalico.org/RouteReflectorClusterID"}
    assert owned_fields(obj, "someone-else") == (frozenset(), frozenset())


def test_node_state_reads_node_and_ownership() -> None:
    obj = node(managedFields=[managed("calico-rr", "Apply", ["calico-rr.io/group"], [])])
    ns = node_state(obj, "calico-rr")
    assert ns.node.ip == "10.0.0.1" and ns.node.ready
    assert ns.node.raw is None  # the cache keeps no copy of the whole object
    assert ns.owned_labels == {"calico-rr.io/group"}
    assert ns.owned_label_values() == {"calico-rr.io/group": "g1"}


def test_node_with_a_bad_address_is_kept_without_bgp() -> None:
    obj = node(annotations={"projectcalico.org/IPv4Address": "not-an-ip"})
    ns = node_state(obj, "calico-rr")
    assert ns.node.name == "n1" and ns.node.ip is None
    assert ns.node.labels["team"] == "blue"


def test_node_status_reports() -> None:
    name, status = node_bgp_status({"spec": {"node": "n1"}})
    assert name == "n1" and not status.reported
    name, status = node_bgp_status(
        {
            "spec": {"node": "n2"},
            "status": {
                "bgp": {
                    "peersV4": [
                        {"peerIP": "10.0.0.1", "state": "Established"},
                        {"peerIP": "10.0.0.2", "state": "Active"},
                    ]
                }
            },
        }
    )
    assert name == "n2" and status.reported
    assert status.established == {"10.0.0.1"}
