"""``calico-rr doctor``'s checks: a Calico cluster's configuration against the talk's
scale advice (pure).

:func:`diagnose` turns an :class:`~calico_rr.core.doctor.inventory.Inventory` into a
sorted list of :class:`~calico_rr.core.doctor.findings.Finding`.  BGP findings are
measured on the session graph calico-node would build
(:func:`calico_rr.core.bgp.sessions.build_session_graph`), not guessed from the objects.
The checks live in ``peering`` (mesh, RR sessions and zones, selectors) and
``pools_typha`` (IPPools, Typha); their thresholds are constants at the top of each.

The checks and their thresholds (domain.md sections 2, 4, 5, 8 and 9; docs/DOCTOR.md
lists them with the reasoning):

=================== ========= ==========================================================
id                  severity  when
=================== ========= ==========================================================
mesh-at-scale       error     mesh on and more than 100 nodes in it
mesh-with-rrs       warning   mesh on while some nodes have an RR cluster ID
twin-protocols      warning   mesh on and BGPPeers peering the same non-RR pairs: two
                              BIRD protocols to one address on both ends (core.bgp.twins)
client-without-rr   error     mesh off, a non-RR node with no BGP session at all
                    warning   mesh off, a non-RR node with sessions, none to an RR (or
                              no session at all while the cluster peers with outside
                              routers, which may carry its routes)
rr-overloaded       warning   an RR holds more sessions than the session budget (500)
rr-single-zone      warning   every RR in one zone while the BGP nodes span several
                              (these three per family in a dual-stack cluster)
encap-always        warning   an enabled IPPool with ipipMode/vxlanMode Always and nodes
                              sharing a subnet (or subnets unknown); info when every
                              node is alone in its subnet
nat-outgoing        info      an enabled IPPool with natOutgoing: true
typha-missing       warning   Kubernetes datastore, 51-100 nodes, no calico-typha
                    error     ... more than 100 nodes
typha-replicas      error     fewer than one replica per 200 nodes
                    warning   fewer than 3 (production), more than 20, or not fewer
                              replicas than nodes
family-unrouted     warning   an enabled IPPool of a family no BGP node has an address of
dual-stack-gap      warning   the cluster uses a family (nodes or pools) and some BGP
                              nodes have no address of it (core.doctor.families)
mesh-per-family     info      mesh on and BGP in both families: the mesh size in each
all-selectors       error     more than 100 BGP nodes and a BGPPeer whose both sides
                              select every BGP node (a second full mesh)
                    warning   ... peerSelector selecting every node, from a subset
                    info      ... nodeSelector (or none) selecting every node, towards
                              a subset
add-path-fanout     warning   some BIRD would hold more than 200,000 add-path routes:
                              RRs under several cluster IDs chain routes through each
                              other (core.bgp.verify.fanout)
=================== ========= ==========================================================

"Selects every node" is evaluated, not read off the text: ``all()``, but also
``a == 'x' || all()``, ``!has(nonexistent)`` or ``has(kubernetes.io/hostname)`` when
every BGP node matches (the nodes' labels decide, as they do for calico-node).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace

from calico_rr.core.bgp.families import Family, families_present, family_label, project
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.doctor.families import FAMILY_CHECKS
from calico_rr.core.doctor.findings import CheckView, Finding, Severity
from calico_rr.core.doctor.inventory import Inventory
from calico_rr.core.doctor.peering import (
    PEERING_CHECKS,
    check_client_without_rr,
    check_rr_overloaded,
    check_rr_single_zone,
)
from calico_rr.core.doctor.pools_typha import POOL_TYPHA_CHECKS
from calico_rr.errors import InputError

#: Sessions one route reflector handles comfortably (domain.md 4; PlanConfig's default).
DEFAULT_SESSION_BUDGET = 500

CHECKS = PEERING_CHECKS + POOL_TYPHA_CHECKS + FAMILY_CHECKS

#: The checks run on every family's session graph (each BGP daemon's sessions).  The
#: mesh checks stay on the first family's: mesh-per-family gives each mesh's size.
PER_FAMILY = (check_client_without_rr, check_rr_overloaded, check_rr_single_zone)


def diagnose(inv: Inventory, *, session_budget: int = DEFAULT_SESSION_BUDGET) -> list[Finding]:
    """Every finding for ``inv``, errors first, then by id, object and message."""
    if session_budget < 1:
        raise InputError(f"must be >= 1, got {session_budget}", field="--session-budget")
    # The checks read the first family's graph (IPv4, or IPv6 in an IPv6-only
    # cluster); the family checks compare the families.  The checks of what each
    # BGP daemon's sessions are (BIRD's and bird6's differ when some RR or client
    # lacks an address of a family, or a BGPPeer has a peerIP of one family) run
    # once per family, their messages naming it.
    families = families_present(inv.state)
    views = [
        CheckView(inv, build_session_graph(project(inv.state, f)), session_budget) for f in families
    ]
    findings = [f for check in CHECKS if check not in PER_FAMILY for f in check(views[0])]
    per_family = [[f for check in PER_FAMILY for f in check(view)] for view in views]
    findings.extend(_merge_families(families, per_family))
    return sorted(findings, key=Finding.sort_key)


def _merge_families(families: Sequence[Family], found: Sequence[list[Finding]]) -> list[Finding]:
    """One list of the per-family findings: a finding every family has alike is
    shown once, as is; any other names its family."""
    if len(families) == 1:
        return list(found[0])
    common = set(found[0]).intersection(*found[1:])
    out = sorted(common, key=Finding.sort_key)
    for family, items in zip(families, found, strict=True):
        name = family_label(family)
        out.extend(
            replace(f, message=f"{name} sessions: {f.message}") for f in items if f not in common
        )
    return out


def summary_counts(findings: Iterable[Finding]) -> dict[str, int]:
    counts = Counter(f.severity for f in findings)
    return {s.value: counts[s] for s in Severity}
