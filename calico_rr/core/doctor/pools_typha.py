"""``calico-rr doctor``'s IPPool and Typha checks (pure): encapsulation and NAT on
the enabled pools, and whether Typha is there and sized for the node count (on the
Kubernetes datastore; how many replicas is ``core.operator.typha``'s rule)."""

from __future__ import annotations

from collections import Counter

from calico_rr.core.doctor.findings import CheckView, Finding, Severity, plural
from calico_rr.core.doctor.inventory import TYPHA_NAME, Deployment, Inventory
from calico_rr.core.operator.typha import (
    MAX_REPLICAS,
    MIN_REPLICAS,
    NODES_PER_REPLICA,
    replicas_wanted,
)

#: Typha (Kubernetes datastore only): recommended above 50 nodes, essential above 100;
#: how many replicas is the Typha rule's (``core.operator.typha``).
TYPHA_RECOMMENDED = 50
TYPHA_ESSENTIAL = 100


def _subnet_evidence(view: CheckView) -> tuple[bool | None, str]:
    """(do nodes share subnets?, evidence) over the BGP nodes; None when unknown."""
    nodes = [n.name for n in view.graph.nodes]
    known = [view.inv.subnets[n] for n in nodes if n in view.inv.subnets]
    if not known:
        return None, "the nodes' subnets are unknown (their addresses carry no prefix length)"
    sizes = Counter(known)
    shared = sum(k for k in sizes.values() if k > 1)
    biggest = max(sizes, key=lambda s: (sizes[s], s))
    text = f"{len(known)} nodes sit in {plural(len(sizes), 'subnet')}"
    if shared:
        text += (
            f", {shared} of them share a subnet with another node (largest: {biggest} with "
            f"{sizes[biggest]} nodes)"
        )
        return True, text
    return False, text + ", each node alone in its subnet"


def check_encap_always(view: CheckView) -> list[Finding]:
    out: list[Finding] = []
    shares: bool | None = None
    evidence = ""
    for pool in view.inv.pools:
        if pool.disabled:
            continue
        for key, mode, tunnel in (
            ("ipipMode", pool.ipip_mode, "IPIP"),
            ("vxlanMode", pool.vxlan_mode, "VXLAN"),
        ):
            if mode != "Always":
                continue
            if not evidence:
                shares, evidence = _subnet_evidence(view)
            if shares is False:
                severity = Severity.INFO
                gain = "CrossSubnet would encapsulate the same traffic: nothing to gain today"
            else:
                severity = Severity.WARNING
                gain = (
                    "CrossSubnet would send traffic between nodes of one subnet unencapsulated "
                    "(no per-packet overhead, larger MTU)"
                )
            other = (
                "VXLAN (lower throughput, but no BGP needed)"
                if tunnel == "IPIP"
                else "CrossSubnet, or IPIP CrossSubnet with BGP"
            )
            out.append(
                Finding(
                    "encap-always",
                    severity,
                    f"IPPool/{pool.name}",
                    f"spec.{key} is Always on {pool.cidr}: every pod packet between nodes is "
                    f"{tunnel}-encapsulated, also between nodes on the same subnet; {evidence}; "
                    f"{gain}.",
                    f"Set spec.{key}: CrossSubnet on IPPool {pool.name} (encapsulate only "
                    f"across subnets); keep Always only if the network drops pod addresses even "
                    f"inside a subnet. Alternative: {other}.",
                )
            )
    return out


def check_nat_outgoing(view: CheckView) -> list[Finding]:
    return [
        Finding(
            "nat-outgoing",
            Severity.INFO,
            f"IPPool/{pool.name}",
            f"spec.natOutgoing is true on {pool.cidr}: pod traffic to destinations outside the "
            "pool is masqueraded to the node's address, so outside networks see node IPs, not "
            "pod IPs (the talk: a special, advanced case).",
            f"Keep it only where pods must reach networks that cannot route {pool.cidr}; where "
            "pod addresses are routable (BGP to the top-of-rack routers), set "
            f"spec.natOutgoing: false on IPPool {pool.name}.",
        )
        for pool in view.inv.pools
        if pool.nat_outgoing and not pool.disabled
    ]


def _typha(inv: Inventory) -> list[Deployment]:
    return [d for d in inv.deployments if d.name == TYPHA_NAME]


def check_typha_missing(view: CheckView) -> list[Finding]:
    n = len(view.inv.state.nodes)
    if not view.inv.kdd or n <= TYPHA_RECOMMENDED or _typha(view.inv):
        return []
    essential = n > TYPHA_ESSENTIAL
    _, want = replicas_wanted(n)
    return [
        Finding(
            "typha-missing",
            Severity.ERROR if essential else Severity.WARNING,
            f"Deployment/{TYPHA_NAME}",
            f"{n} nodes on the Kubernetes datastore and no {TYPHA_NAME} Deployment in any "
            f"namespace: every node's Felix watches the API server itself ({n} watches per "
            f"resource type). Typha is recommended above {TYPHA_RECOMMENDED} nodes and "
            f"essential above {TYPHA_ESSENTIAL}.",
            f"Deploy Typha with {want} replicas (the tigera-operator does it by itself; for a "
            "manifest install use Calico's Typha manifest and set typha_service_name in the "
            "calico-config ConfigMap).",
        )
    ]


def check_typha_replicas(view: CheckView) -> list[Finding]:
    if not view.inv.kdd:
        return []
    n = len(view.inv.state.nodes)
    hard, recommended = replicas_wanted(n)
    out: list[Finding] = []
    for dep in _typha(view.inv):
        r = dep.replicas
        problems: list[str] = []
        severity = Severity.WARNING
        if r < hard:
            severity = Severity.ERROR
            problems.append(
                f"fewer than one per {NODES_PER_REPLICA} nodes ({hard} needed for {n} "
                "nodes): each Typha serves too many Felix agents"
            )
        elif r < recommended:
            problems.append(
                f"below the production minimum of {recommended} (at least {MIN_REPLICAS}, one per "
                f"{NODES_PER_REPLICA} nodes): losing one replica moves its Felix agents "
                "onto too few others"
            )
        if r > MAX_REPLICAS:
            problems.append(
                f"more than {MAX_REPLICAS}: every replica adds a watch on the API server and "
                "Felix gains nothing"
            )
        if n >= 2 and r >= n:  # the rule holds from 2 nodes on (core.operator.typha)
            problems.append(
                f"not fewer than the {n} nodes: Typha runs on the host network, one per node, "
                "so a rolling update has nowhere to go"
            )
        if not problems:
            continue
        target = f"Set spec.replicas: {recommended} on Deployment {dep.namespace}/{dep.name}"
        out.append(
            Finding(
                "typha-replicas",
                severity,
                f"Deployment/{dep.namespace}/{dep.name}",
                f"spec.replicas is {r} with {n} nodes: " + "; ".join(problems) + ".",
                f"{target} "
                f"(max({MIN_REPLICAS}, ceil(nodes/{NODES_PER_REPLICA})), at most "
                f"{MAX_REPLICAS}, fewer than the nodes); with the tigera-operator, it sizes Typha "
                "itself.",
            )
        )
    return out


#: The checks of this module, in the order :func:`~calico_rr.core.doctor.checks.diagnose`
#: runs them.
POOL_TYPHA_CHECKS = (
    check_encap_always,
    check_nat_outgoing,
    check_typha_missing,
    check_typha_replicas,
)
