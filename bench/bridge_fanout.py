"""The operator's transitions: add-path tables while old and new peerings coexist.

    .venv/bin/python bench/bridge_fanout.py --sizes 50,100,1000 --topologies hierarchy,multi
    .venv/bin/python bench/bridge_fanout.py --sizes 100 --topologies hierarchy --from single
    .venv/bin/python bench/bridge_fanout.py --sizes 100 --from single --every-write

Drives the pure reconcile (core.operator) on an in-memory cluster to Steady and
counts the add-path table (core.bgp.verify.fanout) of the busiest node twice: in
the make state and in the final layout.  For a migration from the mesh the make
state is the bridge BGPPeer, the new layout and the mesh together, just before
the mesh goes off; for a topology switch (``--from single``) it is the old
peerings' ``-prev`` companions beside the new layout, just before the break.
No BIRD runs; the counter's figures matched BIRD 1.6.8's route counts in the lab
(docs/PERFORMANCE.md, "The cause is the add-path table").

Why it matters: a bridge to every RR peers the RRs with each other too.  Under
one cluster ID that is Calico's own recipe; under several (hierarchy, multi) each
RR treats the others as clients, a route travels every chain of distinct IDs,
and every node held thousands of paths per prefix for as long as the make state
lasted.  The bridge now reaches the RRs of one cluster ID where the layout has
one with two RRs or more (core.operator.peerings.bridge_hubs); this script keeps
the figures honest for every topology, size and starting point.
"""

from __future__ import annotations

import argparse
import json
import time

from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.bgp.verify.fanout import FanOut, fanout
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import Decision, Phase
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_CLUSTER_ID
from calico_rr.testing.sim import SimCluster


def _table(sim: SimCluster) -> FanOut | None:
    return fanout(build_session_graph(parse_resources(sim.calico_documents()).state))


def _row(found: FanOut | None) -> dict[str, object]:
    if found is None:
        return {}
    return {
        "paths_per_prefix": found.paths_per_prefix,
        "routes_per_node": found.routes_per_node,
        "holder": found.holder,
        "lower_bound": found.at_least,
    }


def _drive(
    sim: SimCluster, topology: str, every_write: bool = False
) -> tuple[FanOut | None, FanOut | None]:
    """Reconcile to Steady; the table of the make state (the largest of a state
    just before old peerings go: the mesh switched off, or a rollout's break) and,
    with ``every_write``, the largest after any single write of a rollout's break
    (core.operator.rollout._break: the moment held cluster IDs change before the
    deletes, say).  Every write costs a count: for small sizes."""
    make: list[FanOut] = []
    writes: list[FanOut] = []
    breaking = [False]

    def inspect(state: SimCluster, decision: Decision) -> None:
        breaking[0] = decision.phase == Phase.BREAKING
        first_break = breaking[0] and not make
        if (decision.mesh is False or first_break) and (found := _table(state)) is not None:
            make.append(found)

    def each_write(state: SimCluster, _what: str) -> None:
        if breaking[0] and (found := _table(state)) is not None:
            writes.append(found)

    # no CalicoNodeStatus in memory: confirm by waiting (the clock follows requeues)
    settings = OperatorSettings(plan=PlanConfig(topology=topology), session_check="Wait")  # type: ignore[arg-type]
    sim.run(settings, before=inspect, checker=each_write if every_write else None)
    worst = max(make, key=lambda t: t.routes_per_node, default=None)
    return worst, max(writes, key=lambda t: t.routes_per_node, default=None)


def measure(
    size: int, topology: str, start: str, zones: int, every_write: bool = False
) -> dict[str, object]:
    """The add-path table of the make state on the way from ``start`` (``mesh``
    or a topology the operator applied first) to ``topology``, of the end, and
    with ``every_write`` the largest after any write of the break."""
    sim = SimCluster.of(synthetic_cluster(size, zones=zones))
    if start != "mesh":
        _drive(sim, start)
    make, brk = _drive(sim, topology, every_write)
    rrs = sum(1 for ns in sim.nodes.values() if ANN_CLUSTER_ID in ns.node.annotations)
    row: dict[str, object] = {
        "nodes": size,
        "from": start,
        "topology": topology,
        "route_reflectors": rrs,
        "make_state": _row(make),
        "final_layout": _row(_table(sim)),
    }
    if every_write:
        row["break_worst_write"] = _row(brk)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,100,200,1000")
    ap.add_argument("--topologies", default="hierarchy,multi,quorum,single")
    ap.add_argument("--zones", type=int, default=3)
    ap.add_argument("--from", dest="start", default="mesh", help="mesh, or a topology")
    ap.add_argument(
        "--every-write", action="store_true", help="count after every write of the break"
    )
    args = ap.parse_args()
    for topology in args.topologies.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            t0 = time.perf_counter()
            row = measure(size, topology, args.start, args.zones, args.every_write)
            row["seconds"] = round(time.perf_counter() - t0, 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
