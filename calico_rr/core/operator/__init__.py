"""The operator's decisions (pure): its settings (the RouteReflectorConfig spec),
what it observes and decides (state), the objects it writes beside the plan's
(peerings), one level-triggered reconcile step (decide) and the way back to the
mesh (teardown), the safety gate every write passes, and the Typha rule it keeps.

This package is the face the operator's adapters use (``from calico_rr.core
import operator as core``)."""

from calico_rr.core.operator.confirm import rr_peer_addresses_by_family
from calico_rr.core.operator.decide import reconcile, summary_counts
from calico_rr.core.operator.state import (
    BRIDGE_LABEL,
    COMPANION_LABEL,
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
    "COMPANION_LABEL",
    "Decision",
    "NodeApply",
    "NodeBGPStatus",
    "NodeState",
    "Observed",
    "Phase",
    "reconcile",
    "rr_peer_addresses_by_family",
    "summary_counts",
    "uninstall",
    "uninstall_preview",
]
