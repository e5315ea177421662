"""Confirming new BGP sessions before old peerings go (pure): the *confirm* step
of core.operator.decide's module doc.

The route reflectors of the new layout report their sessions through
CalicoNodeStatus objects the operator requests; when Calico reports nothing (or
``sessionCheck: Wait``), a configured wait stands in for the reports.

A dual-stack cluster runs two BGP daemons per node (BIRD and bird6), each with its
own sessions; CalicoNodeStatus lists them in ``peersV4`` and ``peersV6``.  A step
is confirmed only when every expected session of every family is Established.
"""

from __future__ import annotations

from typing import Any

from calico_rr.core.bgp.families import Family, family_label
from calico_rr.core.bgp.verify.families import family_graphs
from calico_rr.core.operator.peerings import cns_name, cns_object
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import Decision, Observed, Phase, requeue_delay
from calico_rr.core.planning import planner
from calico_rr.core.planning.candidates import healthy


def _uses_node_status(obs: Observed, settings: OperatorSettings) -> bool:
    """Whether sessions are confirmed from CalicoNodeStatus reports (else by waiting)."""
    return obs.node_status_supported and settings.session_check != "Wait"


def node_status_changes(
    obs: Observed, settings: OperatorSettings, rr_nodes: frozenset[str], decision: Decision
) -> None:
    """Add to ``decision`` the CalicoNodeStatus requests of ``rr_nodes`` that are
    missing, and the deletion of every other one."""
    want = {cns_name(n): n for n in rr_nodes} if _uses_node_status(obs, settings) else {}
    for name, node in sorted(want.items()):
        if name not in obs.node_status_objects:
            decision.node_status_applies.append(cns_object(node, settings.plan.api_group))
    decision.node_status_deletes.extend(sorted(obs.node_status_objects - set(want)))


def rr_peer_addresses_by_family(the_plan: planner.Plan) -> dict[Family, dict[str, frozenset[str]]]:
    """Family -> RR node -> addresses (of that family) of the healthy nodes it must
    have Established sessions with once ``the_plan`` is in place, for every family
    the cluster uses: each family's session graph, from the rendered resources
    (calico-node runs one BGP daemon per family, so each has its own sessions)."""
    from calico_rr.core.bgp.resources import parse_resources

    graphs = family_graphs(parse_resources(the_plan.calico_documents()).state)
    live = {n.name for n in the_plan.nodes if healthy(n)}
    rr_names = sorted(set(the_plan.layout.holders.values()))
    out: dict[Family, dict[str, frozenset[str]]] = {}
    for family, graph in graphs.items():
        index = graph.index()
        per_rr: dict[str, frozenset[str]] = {}
        for name in rr_names:
            i = index.get(name)
            if i is None:  # no address of this family: no session of it either
                continue
            # in a family's graph ``ip`` is the node's address of that family
            peers = (graph.nodes[j] for j in graph.peers(i))
            per_rr[name] = frozenset(p.ip for p in peers if p.ip is not None and p.name in live)
        out[family] = per_rr
    return out


def rr_peer_addresses(the_plan: planner.Plan) -> dict[str, frozenset[str]]:
    """RR node -> addresses of the healthy nodes it must have Established sessions
    with once ``the_plan`` is in place, every family's together (an IPv6 address
    never equals an IPv4 one): the set a CalicoNodeStatus report
    (``peersV4`` + ``peersV6``) must cover."""
    out: dict[str, frozenset[str]] = {}
    for per_rr in rr_peer_addresses_by_family(the_plan).values():
        for name, ips in per_rr.items():
            out[name] = out.get(name, frozenset()) | ips
    return out


def sessions_confirmed(
    obs: Observed, settings: OperatorSettings, the_plan: planner.Plan, made_at: float
) -> tuple[bool, str]:
    """May old peerings go?  (confirmed, why).  With reports, every expected
    session of every family the cluster uses must be Established: a dual-stack
    cluster's IPv6 routes go over bird6's sessions, which the mesh also carries."""
    waited = obs.now - made_at
    wait_left = settings.wait_timeout - waited
    if not _uses_node_status(obs, settings):
        if wait_left <= 0:
            return True, f"waited {settings.wait_timeout:g}s (no session reports in use)"
        return False, f"waiting {wait_left:.1f}s more before removing old peerings"
    rr_names = set(the_plan.layout.holders.values())
    reports = {n: obs.node_status.get(n) for n in rr_names}
    if not any(r is not None and r.reported for r in reports.values()):
        if settings.session_check == "Auto" and wait_left <= 0:
            return True, f"no CalicoNodeStatus reports; waited {settings.wait_timeout:g}s"
        return False, "waiting for CalicoNodeStatus reports from the route reflectors"
    # the session graphs: only once reports exist
    by_family = rr_peer_addresses_by_family(the_plan)
    gaps: list[str] = []
    for family, expected in by_family.items():
        missing = 0
        first: str | None = None
        for node, ips in expected.items():
            report = reports.get(node)
            up = report.established if report is not None else frozenset()
            gap = ips - up
            if gap:
                missing += len(gap)
                first = first or f"{node} -> {sorted(gap)[0]}"
        if missing:
            label = f" {family_label(family)}" if len(by_family) > 1 else ""
            gaps.append(f"{missing}{label} BGP sessions not Established yet (e.g. {first})")
    if gaps:
        return False, "; ".join(gaps)
    if len(by_family) > 1:
        return True, "every new BGP session is Established (IPv4 and IPv6)"
    return True, "every new BGP session is Established"


def confirm_sessions(
    obs: Observed,
    settings: OperatorSettings,
    the_plan: planner.Plan,
    record: dict[str, Any],
    *,
    start: dict[str, Any],
    message: str,
    in_transition: int = 0,
) -> tuple[Decision | None, str]:
    """Confirm the new sessions of a change whose writes are all done.

    ``record`` is the stored transition record; its ``madeAt``, if it is of the
    kind of ``start``, is when the writes were found complete.  Without one the
    clock starts now: ``start`` plus ``madeAt`` is stored, with ``message``.
    Returns a CONFIRMING decision while the sessions are not confirmed, else None
    and why they are."""
    made_at = record.get("madeAt") if record.get("kind") == start["kind"] else None
    if not isinstance(made_at, int | float):
        d = Decision(Phase.CONFIRMING, message, plan=the_plan, in_transition=in_transition)
        d.set_transition({**start, "madeAt": obs.now})
        d.requeue_after = requeue_delay(settings, 0.0)
        return d, message
    ok, why = sessions_confirmed(obs, settings, the_plan, float(made_at))
    if ok:
        return None, why
    d = Decision(Phase.CONFIRMING, why, plan=the_plan, in_transition=in_transition)
    d.requeue_after = requeue_delay(settings, obs.now - float(made_at))
    return d, why
