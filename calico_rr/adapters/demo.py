"""``calico-rr demo`` on either datastore: the flow (:func:`run_flow` over a
:class:`DemoSite` each datastore provides) and the keys of its JSON.

Both demos print one JSON object with exactly these keys (``zone_failure`` only
when there are zones, timings only once reached); :func:`demo_result` puts them
in this order and refuses a key that is not listed, so the two demos cannot drift
apart silently.  What each key means on each datastore: docs/OPERATOR.md
(``calico-rr demo``) and docs/ETCD.md (``calico-rr demo --datastore etcdv3``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from calico_rr.adapters.wiring import DatastoreOperator
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.bgp.verify.families import FamiliesReport, verify_families
from calico_rr.core.operator.safety import check
from calico_rr.core.operator.settings import CONFIG_NAME
from calico_rr.model import ZONE_LABEL, Node

DEMO_KEYS: Final = (
    "nodes",
    "zones",
    "ip_family",
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
    # set by ``calico-rr demo`` (the HTML page it wrote, or null), not by run_demo
    "report",
)
#: ``verification``: what the verifier says about the converged layout, every family
#: together, then ``families``: the same per address family (IPv4, IPv6), with the
#: nodes that have no address of the family.
VERIFICATION_KEYS: Final = ("reachable", "single_rr_failure_tolerant", "sessions", "families")
#: ``zone_failure``: one zone's nodes fail, the operator re-converges.
ZONE_FAILURE_KEYS: Final = (
    "zone",
    "failed_nodes",
    "seconds_to_reconverge",
    "surviving_nodes_reach_each_other",
)
#: Seconds the demo waits for each step (convergence, the join, the zone failure).
TIMEOUT: Final = 600.0


def demo_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """``result`` in the order of :data:`DEMO_KEYS`; ValueError on a key not listed
    there (or in the nested key lists)."""
    unknown = set(result) - set(DEMO_KEYS)
    for key, allowed in (("verification", VERIFICATION_KEYS), ("zone_failure", ZONE_FAILURE_KEYS)):
        nested = result.get(key)
        if isinstance(nested, Mapping):
            unknown |= {f"{key}.{k}" for k in set(nested) - set(allowed)}
    if unknown:
        raise ValueError(f"demo result keys not in demo.DEMO_KEYS: {sorted(unknown)}")
    return {key: result[key] for key in DEMO_KEYS if key in result}


def verification(checked: FamiliesReport) -> dict[str, Any]:
    """``verification``: every family together (a dual-stack layout holds only when
    both families do), then each family's own verdict."""
    combined = checked.combined()
    return {
        "reachable": combined.reachable,
        "single_rr_failure_tolerant": combined.single_rr_failure_tolerant,
        "sessions": combined.sessions,
        "families": {
            part.family: {
                "reachable": part.reachable,
                "single_rr_failure_tolerant": part.report.single_rr_failure_tolerant,
                "sessions": part.report.sessions,
                "nodes_without_address": len(part.without_address),
            }
            for part in checked.families
        },
    }


# -- what the demo's report shows beyond the result ----------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """The operator's status as the demo polled it, when it changed."""

    #: seconds since the operator started (not compared: a sample is what was polled)
    seconds: float = field(compare=False)
    phase: str
    message: str
    route_reflectors: int | None
    mesh_enabled: bool | None


@dataclass
class DemoTrace:
    """The status over time, the demo's own steps, and the converged session graph:
    what :mod:`calico_rr.adapters.demo_report` draws.  Filled by :func:`run_flow`."""

    start: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    #: (seconds since the operator started, what the demo did)
    events: list[tuple[float, str]] = field(default_factory=list)
    graph: SessionGraph | None = None

    def elapsed(self) -> float:
        return round(time.monotonic() - self.start, 2)

    def record(self, status: Mapping[str, Any]) -> None:
        """Keep ``status`` when its phase, message, RR count or mesh differ from the
        last sample (polling runs every 50 ms; most polls repeat the last one)."""
        rrs = status.get("routeReflectors")
        mesh = status.get("meshEnabled")
        sample = Sample(
            seconds=self.elapsed(),
            phase=str(status.get("phase") or "(none)"),
            message=str(status.get("message") or ""),
            route_reflectors=rrs if isinstance(rrs, int) else None,
            mesh_enabled=mesh if isinstance(mesh, bool) else None,
        )
        if not self.samples or self.samples[-1] != sample:
            self.samples.append(sample)

    def event(self, text: str) -> None:
        self.events.append((self.elapsed(), text))


# -- the flow both demos run ----------------------------------------------------------------


def config_document(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The RouteReflectorConfig the demo gives the operator."""
    return {
        "apiVersion": "calico-rr.io/v1alpha1",
        "kind": "RouteReflectorConfig",
        "metadata": {"name": CONFIG_NAME},
        "spec": dict(spec),
    }


def create_all(one: Callable[[Node], object], nodes: Iterable[Node], workers: int) -> int:
    """``one(node)`` for each node, ``workers`` in flight; the number of nodes.
    The first error raised is raised here (after the others finished)."""
    batch = list(nodes)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(one, n) for n in batch]:
            future.result()
    return len(batch)


class DemoSite(Protocol):
    """What the demo's flow needs from a datastore with the operator running on it."""

    #: where documents are read from, for messages ("cluster", "etcd")
    where: str

    @property
    def op(self) -> DatastoreOperator: ...

    def status(self) -> Mapping[str, Any]:
        """The operator's status as an admin reads it."""
        ...

    def documents(self) -> list[dict[str, Any]]:
        """Nodes, BGPPeers and BGPConfigurations as calico-node reads them."""
        ...

    def seen(self, name: str) -> bool:
        """Has the node reached the operator's cache?"""
        ...

    def mark_sync(self) -> None:
        """Requests from now on are "after the initial sync"."""
        ...

    def join(self, nodes: Sequence[Node], wait: Callable[[], float]) -> tuple[int, list[str]]:
        """Create ``nodes``, ``wait`` until the operator handled them; the operator's
        writes for it (count, descriptions)."""
        ...

    def fail_zone(self, zone: str, names: Sequence[str]) -> None:
        """The zone's nodes go NotReady (as the datastore tells readiness)."""
        ...

    def lists_after_sync(self) -> int:
        """Full reads the operator sent after the initial sync, as the server counts."""
        ...

    def requests_total(self) -> int:
        """Requests the operator sent since it started, as the server counts."""
        ...


def wait_steady(
    op: DatastoreOperator,
    status: Callable[[], Mapping[str, Any]],
    timeout: float,
    since: float = 0.0,
    trace: DemoTrace | None = None,
) -> float:
    """Seconds until the operator reports Steady with the mesh off (after ``since``);
    each status polled goes to ``trace``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        st = status()
        if trace is not None:
            trace.record(st)
        steady = op.stats.steady_since
        if (
            st.get("phase") == "Steady"
            and st.get("meshEnabled") is False
            and steady is not None
            and steady >= since
        ):
            return time.monotonic() - start
        time.sleep(0.05)
    raise TimeoutError(f"operator not steady after {timeout:.0f}s: {op.stats.last_message}")


def wait_node_handled(
    op: DatastoreOperator, seen: Callable[[], bool], name: str, since: float, timeout: float
) -> float:
    """Seconds from ``since`` until a reconcile pass that started after the node
    reached the operator's cache has ended, leaving the layout Steady."""
    seen_at: float | None = None
    while time.monotonic() - since < timeout:
        if seen_at is None and seen():
            seen_at = time.monotonic()
        stats = op.stats
        if (
            seen_at is not None
            and stats.last_start > seen_at
            and stats.last_end > stats.last_start
            and stats.last_phase == "Steady"
        ):
            return stats.last_end - since
        time.sleep(0.002)
    raise TimeoutError(f"node {name} not handled in {timeout:.0f}s: {op.stats.last_message}")


def run_flow(
    site: DemoSite,
    cluster: Sequence[Node],
    nodes: int,
    zones: int,
    ip_family: str,
    progress: Callable[[str], None],
    trace: DemoTrace,
) -> dict[str, Any]:
    """Converge and verify, one node joins, one zone fails: the demo on any datastore,
    run right after the operator started; its result (:func:`demo_result`).
    ``trace`` gets the status over time and the session graph."""
    op = site.op
    result: dict[str, Any] = {"nodes": nodes, "zones": zones, "ip_family": ip_family}
    trace.start = time.monotonic()
    trace.event(f"operator started on {nodes} nodes (full mesh on)")
    progress("operator running; waiting for convergence (mesh switched off last)")
    seconds = wait_steady(op, site.status, TIMEOUT, trace=trace)
    result["seconds_to_converge"] = round(seconds, 2)
    result["converged"] = True
    sync_lists = op.lists()
    site.mark_sync()
    docs = site.documents()
    checked = verify_families(parse_resources(docs, where=site.where).state)
    trace.graph = checked.primary.graph  # the drawing: the first family's (IPv4 first)
    result["verification"] = verification(checked)
    result["verified"] = (
        result["verification"]["reachable"] and result["verification"]["single_rr_failure_tolerant"]
    )
    st = site.status()
    result["topology"] = st.get("topology")
    result["route_reflectors"] = st.get("routeReflectors")
    result["bgppeer_objects"] = sum(1 for d in docs if d.get("kind") == "BGPPeer")
    trace.event(f"converged and verified={result['verified']}")
    progress(
        f"converged in {seconds:.1f}s: {result['route_reflectors']} RRs, "
        f"{result['bgppeer_objects']} BGPPeers, verified={result['verified']}"
    )

    # One node joins: the operator's writes, counted by the server.
    joined = cluster[nodes].name
    mark = time.monotonic()
    took: list[float] = []

    def handled() -> float:
        took.append(wait_node_handled(op, lambda: site.seen(joined), joined, mark, TIMEOUT))
        return took[0]

    count, described = site.join(cluster[nodes:], handled)
    result["api_writes_per_node_join"] = count
    result["join_writes"] = described
    result["seconds_to_converge_after_join"] = round(took[0], 3)
    trace.event(f"node {joined} joined: {count} operator write(s)")
    trace.record(site.status())
    progress(f"node {joined} joined: {count} write(s)")

    if zones:
        _fail_zone(site, result, cluster, progress, trace)
    result["api_lists_after_sync"] = site.lists_after_sync()
    result["operator_lists_after_sync"] = op.lists() - sync_lists
    result["api_requests_total"] = site.requests_total()
    result["seconds_total"] = round(time.monotonic() - trace.start, 1)
    return demo_result(result)


def _fail_zone(
    site: DemoSite,
    result: dict[str, Any],
    cluster: Sequence[Node],
    progress: Callable[[str], None],
    trace: DemoTrace,
) -> None:
    """A zone fails: its nodes go NotReady; the RRs there are replaced."""
    zone = sorted({n.labels.get(ZONE_LABEL, "") for n in cluster})[0]
    lost = [n.name for n in cluster if n.labels.get(ZONE_LABEL) == zone]
    if not lost:
        return
    progress(f"zone {zone} fails: {len(lost)} nodes NotReady")
    mark = time.monotonic()
    trace.event(f"zone {zone} fails: {len(lost)} nodes NotReady")
    site.fail_zone(zone, lost)
    seconds = wait_steady(site.op, site.status, TIMEOUT, since=mark, trace=trace)
    safety = check(site.documents(), down=lost)
    result["zone_failure"] = {
        "zone": zone,
        "failed_nodes": len(lost),
        "seconds_to_reconverge": round(seconds, 2),
        "surviving_nodes_reach_each_other": safety.ok,
    }
    result["verified"] = result["verified"] and safety.ok
    trace.event(f"re-converged; surviving nodes reach each other: {safety.ok}")
    progress(f"re-converged in {seconds:.1f}s; survivors safe: {safety.ok}")
