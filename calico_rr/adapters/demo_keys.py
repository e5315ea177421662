"""The keys of ``calico-rr demo --json``, shared by the Kubernetes and the etcd demo.

Both demos print one JSON object with exactly these keys (``zone_failure`` only
when there are zones, timings only once reached); :func:`demo_result` puts them
in this order and refuses a key that is not listed, so the two demos cannot drift
apart silently.  What each key means on each datastore: docs/OPERATOR.md
(``calico-rr demo``) and docs/ETCD.md (``calico-rr demo --datastore etcdv3``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["DEMO_KEYS", "VERIFICATION_KEYS", "ZONE_FAILURE_KEYS", "demo_result"]

DEMO_KEYS: Final = (
    "nodes",
    "zones",
    "converged",
    "verified",
    "seconds_to_converge",
    "verification",
    "topology",
    "route_reflectors",
    "bgppeer_objects",
    "api_writes_per_node_join",
    "join_writes",
    "seconds_to_converge_after_join",
    "zone_failure",
    "api_lists_after_sync",
    "operator_lists_after_sync",
    "api_requests_total",
    "seconds_total",
)
#: ``verification``: what the verifier says about the converged layout.
VERIFICATION_KEYS: Final = ("reachable", "single_rr_failure_tolerant", "sessions")
#: ``zone_failure``: one zone's nodes fail, the operator re-converges.
ZONE_FAILURE_KEYS: Final = (
    "zone",
    "failed_nodes",
    "seconds_to_reconverge",
    "surviving_nodes_reach_each_other",
)


def demo_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """``result`` in the order of :data:`DEMO_KEYS`; ValueError on a key not listed
    there (or in the nested key lists)."""
    unknown = set(result) - set(DEMO_KEYS)
    for key, allowed in (("verification", VERIFICATION_KEYS), ("zone_failure", ZONE_FAILURE_KEYS)):
        nested = result.get(key)
        if isinstance(nested, Mapping):
            unknown |= {f"{key}.{k}" for k in set(nested) - set(allowed)}
    if unknown:
        raise ValueError(f"demo result keys not in demo_keys.DEMO_KEYS: {sorted(unknown)}")
    return {key: result[key] for key in DEMO_KEYS if key in result}
