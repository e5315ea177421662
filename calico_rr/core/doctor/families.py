"""``calico-rr doctor``'s address-family checks (pure): IPv6 IPPools and dual stack.

calico-node runs IPv6 BGP (bird6) beside IPv4 from the same resources; a node
without an IPv6 address has no IPv6 sessions, so in a cluster that uses IPv6 its
IPv6 pod routes reach nobody and it learns nobody's (``core.bgp.families``).
"""

from __future__ import annotations

from calico_rr.core.bgp.families import (
    FAMILIES,
    Family,
    families_of_nodes,
    families_present,
    family_label,
    family_of_address,
    missing_families,
    project,
)
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.doctor.findings import CheckView, Finding, Severity, examples, group_object


def _families_used(view: CheckView) -> tuple[Family, ...]:
    """Families some node has an address of, or some enabled IPPool hands out."""
    nodes = families_of_nodes(view.inv.state.nodes)
    pools = {family_of_address(p.cidr) for p in view.inv.pools if not p.disabled}
    return tuple(f for f in FAMILIES if f in pools or f in nodes)


def check_family_gaps(view: CheckView) -> list[Finding]:
    """BGP nodes without an address of a family the cluster uses."""
    used = _families_used(view)
    nodes = view.inv.state.nodes
    bgp = [n for n in nodes if n.ip is not None or n.ip6 is not None]
    out: list[Finding] = []
    for family in used:
        name = family_label(family)
        lacking = sorted(n.name for n in bgp if missing_families(n, (family,)))
        if not lacking or (len(used) == 1 and len(lacking) == len(bgp)):
            continue
        if len(lacking) == len(bgp):
            pools = sorted(p.name for p in view.inv.pools if family_of_address(p.cidr) == family)
            out.append(
                Finding(
                    "family-unrouted",
                    Severity.WARNING,
                    group_object("IPPool", pools),
                    f"an enabled {name} IPPool exists but no BGP node has an {name} address: "
                    f"{name} pod routes are not exchanged over BGP at all.",
                    f"Give the nodes {name} addresses (calico-node IP6/IP autodetection, "
                    "annotation projectcalico.org/IPv6Address or spec.bgp.ipv6Address), or "
                    "disable the pool.",
                )
            )
            continue
        out.append(
            Finding(
                "dual-stack-gap",
                Severity.WARNING,
                group_object("Node", lacking),
                f"the cluster uses {' and '.join(family_label(f) for f in used)} but "
                f"{len(lacking)} of {len(bgp)} BGP nodes have no {name} address "
                f"({examples(lacking)}): they hold no {name} route and no node holds "
                f"an {name} route to them.",
                f"Give them {name} addresses (calico-node's IP autodetection for that "
                "family), then check with `calico-rr verify --resources dump.yaml`.",
            )
        )
    return out


def check_mesh_per_family(view: CheckView) -> list[Finding]:
    """The mesh size in each family, when the cluster runs BGP in more than one."""
    state = view.inv.state
    present = families_present(state)
    if not view.mesh_on or len(present) < 2:
        return []
    parts = []
    for family in present:
        graph = build_session_graph(project(state, family))
        members = sum(1 for n in graph.nodes if n.cluster_id is None)
        name = family_label(family)
        parts.append(f"{name}: {members} nodes, {members * (members - 1) // 2} sessions")
    return [
        Finding(
            "mesh-per-family",
            Severity.INFO,
            "BGPConfiguration/default",
            "the node-to-node mesh runs once per address family (BIRD and bird6), "
            f"each with its own sessions: {'; '.join(parts)}.",
            "Route reflectors serve both families with the same BGPPeers; choose RRs with "
            "addresses of both (`calico-rr plan` does).",
        )
    ]


FAMILY_CHECKS = (check_family_gaps, check_mesh_per_family)
