"""The operator's decisions (pure): its settings (the RouteReflectorConfig spec),
what it observes and decides (state), the objects it writes beside the plan's
(peerings), one level-triggered reconcile step (decide) and the way back to the
mesh (teardown), the safety gate every write passes, and the Typha rule it keeps.

This package is the face the operator's adapters use (``from calico_rr.core
import operator as core``)."""

from calico_rr.core.operator.confirm import (
    rr_peer_addresses,
    rr_peer_addresses_by_family,
    sessions_confirmed,
)
from calico_rr.core.operator.decide import reconcile, summary_counts
from calico_rr.core.operator.peerings import bridge_peer, cns_name, companion_selector
from calico_rr.core.operator.state import (
    BRIDGE_LABEL,
    BRIDGE_NAME,
    COMPANION_LABEL,
    MARKER,
    Decision,
    NodeApply,
    NodeBGPStatus,
    NodeState,
    Observed,
    Phase,
)
from calico_rr.core.operator.teardown import uninstall, uninstall_preview

__all__ = [
    "BRIDGE_LABEL",
    "BRIDGE_NAME",
    "COMPANION_LABEL",
    "MARKER",
    "Decision",
    "NodeApply",
    "NodeBGPStatus",
    "NodeState",
    "Observed",
    "Phase",
    "bridge_peer",
    "cns_name",
    "companion_selector",
    "reconcile",
    "rr_peer_addresses",
    "rr_peer_addresses_by_family",
    "sessions_confirmed",
    "summary_counts",
    "uninstall",
    "uninstall_preview",
]
