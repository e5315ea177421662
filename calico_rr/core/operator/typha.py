"""The Typha keeper: how many calico-typha replicas a cluster should run, and when
to change them.  Pure: no I/O, the caller passes the clock.

Calico's advice (domain.md 9): Typha above 50 nodes, at least one replica per 200
nodes, at most 20, at least 3 in production, and fewer replicas than nodes (each
replica needs a node of its own, with host networking and anti-affinity).

Decisions worth knowing:

* **The target** is ``min(20, max(3, ceil(nodes / 200)))``, lowered to ``nodes - 1``
  so that it stays below the node count, but never below 1: with one node (or
  none) the rule "fewer than the nodes" would mean 0 replicas, and a Felix
  configured to use Typha would then lose its datastore feed.  So the keeper
  keeps 1 there and the rule holds from 2 nodes on.
* **Up promptly, down slowly.**  A higher target is applied once it has held for
  ``settle`` (a burst of joins is one change, not one per node).  A lower target
  is applied only after it has held for ``cool_down`` *and* at least ``cool_down``
  after the keeper's previous change, so node churn cannot make it flap.  Any
  moment the target is back at (or above) the replicas restarts the wait.
* **State lives in memory.**  A restarted (or newly elected) keeper starts with
  no pending change, which only delays the next change by ``settle`` or
  ``cool_down`` - never hastens it - so nothing is lost by not persisting it.
* **Ownership.**  A Deployment another controller owns (``ownerReferences``, as the
  Tigera operator sets them, or the Tigera operator's ``calico-system`` layout) is
  scaled by that controller; writing to it would start a fight.  The keeper reads
  it, reports who manages it, and never writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from calico_rr.core.formats.scalars import format_timestamp

MIN_REPLICAS: Final = 3
MAX_REPLICAS: Final = 20
NODES_PER_REPLICA: Final = 200
#: Namespaces where the Tigera operator installs Calico (its Typha is its own).
OPERATOR_NAMESPACES: Final = frozenset({"calico-system", "tigera-operator"})


def hard_minimum(nodes: int) -> int:
    """One replica per 200 nodes (at most 20): below this each Typha serves too many
    Felix agents."""
    return min(MAX_REPLICAS, math.ceil(max(nodes, 0) / NODES_PER_REPLICA))


def target_replicas(nodes: int) -> int:
    """Typha replicas for ``nodes`` nodes: 3..20, one per 200 nodes, fewer than the
    nodes from 2 nodes on, never below 1."""
    return max(1, min(max(MIN_REPLICAS, hard_minimum(nodes)), nodes - 1))


def replicas_wanted(nodes: int) -> tuple[int, int]:
    """(hard minimum, target) for ``nodes`` nodes, the pair ``doctor`` checks a
    Deployment against; the hard minimum never exceeds the target."""
    target = target_replicas(nodes)
    return min(hard_minimum(nodes), target), target


def managed_by(deployment: Mapping[str, Any]) -> str | None:
    """Who else scales this Deployment, or None when nobody does (a manifest install)."""
    meta = deployment.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, Mapping):
            kind = ref.get("kind", "?")
            name = ref.get("name", "?")
            return f"{kind}/{name} ({ref.get('apiVersion', '?')}, ownerReferences)"
    if meta.get("namespace") in OPERATOR_NAMESPACES:
        return f"the Tigera operator (namespace {meta.get('namespace')})"
    return None


DEFAULT_NAMESPACE: Final = "kube-system"
DEFAULT_NAME: Final = "calico-typha"
DEFAULT_COOL_DOWN: Final = 600.0
DEFAULT_SETTLE: Final = 30.0


@dataclass(frozen=True, slots=True)
class TyphaSettings:
    """``spec.typha`` of the RouteReflectorConfig."""

    enabled: bool = False
    namespace: str = DEFAULT_NAMESPACE
    name: str = DEFAULT_NAME
    cool_down: float = DEFAULT_COOL_DOWN  # seconds a lower target must hold
    settle: float = DEFAULT_SETTLE  # seconds a higher target must hold


Direction = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class KeeperState:
    """What the keeper remembers between passes."""

    #: Direction of the change waiting for its settle or cool-down, and since when.
    pending: Direction | None = None
    since: float | None = None
    #: When the keeper last changed the replicas.
    last_change: float | None = None


@dataclass(frozen=True, slots=True)
class KeeperStep:
    """One decision: scale to ``replicas`` (None: leave as is), the next state, and
    ``wait`` seconds until a pending change is due (None: nothing pending)."""

    replicas: int | None
    state: KeeperState
    target: int
    message: str
    wait: float | None = None


def decide(
    replicas: int,
    nodes: int,
    now: float,
    state: KeeperState,
    *,
    settle: float,
    cool_down: float,
) -> KeeperStep:
    """The keeper's next step for a Deployment at ``replicas`` in a cluster of ``nodes``."""
    target = target_replicas(nodes)
    if target == replicas:
        message = f"{target} replicas for {nodes} nodes: at target"
        return KeeperStep(None, KeeperState(last_change=state.last_change), target, message)
    direction: Direction = "up" if target > replicas else "down"
    since = state.since if state.pending == direction and state.since is not None else now
    if direction == "up":
        due_at = since + settle
    else:
        due_at = since + cool_down
        if state.last_change is not None:
            due_at = max(due_at, state.last_change + cool_down)
    due = due_at - now
    if due <= 0:
        return KeeperStep(
            target,
            KeeperState(last_change=now),
            target,
            f"scaled {replicas} -> {target} for {nodes} nodes",
        )
    # An absolute time, so that the message (and the status) stays the same while
    # the keeper waits.
    waiting = "settle" if direction == "up" else "cool-down"
    at = format_timestamp(float(math.ceil(due_at)))
    return KeeperStep(
        None,
        KeeperState(direction, since, state.last_change),
        target,
        f"{replicas} replicas, target {target} for {nodes} nodes: scaling at {at} ({waiting})",
        wait=due,
    )
