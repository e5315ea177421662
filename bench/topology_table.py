# ruff: noqa: RUF001  (en dashes are wanted in the Markdown output)
"""Print the numbers of every topology at several sizes as a Markdown table.

    .venv/bin/python bench/topology_table.py > /tmp/table.md

Used for docs/TOPOLOGIES.md.  Every figure is measured on the rendered resources.
"""

from __future__ import annotations

import sys

from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import summarize

CASES = [
    (500, 0, 0, "single", None),
    (2000, 0, 0, "multi", 11),
    (2000, 3, 0, "quorum", None),
    (2000, 0, 0, "quorum", 13),
    (5000, 0, 10, "hierarchy", None),
    (5000, 3, 10, "hierarchy", None),
    (50, 0, 0, "auto", None),
    (1500, 3, 0, "auto", None),
    (5000, 3, 0, "auto", None),
]


def rng(s: dict[str, float]) -> str:
    return str(s["min"]) if s["min"] == s["max"] else f"{s['min']}–{s['max']}"


def main() -> None:
    out = sys.stdout
    out.write(
        "| nodes | zones | racks | topology | RRs | cluster IDs | clients/RR | RR peers/RR "
        "| sessions/RR | sessions/client | BGPPeers |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    for nodes, zones, racks, topology, rrs in CASES:
        p = plan(
            synthetic_cluster(nodes, zones=zones, racks=racks),
            PlanConfig(topology=topology, rrs=rrs),  # type: ignore[arg-type]
        )
        s = summarize(p)
        name = topology if topology == p.topology else f"{topology} → {p.topology}"
        out.write(
            f"| {nodes} | {zones or '–'} | {racks or '–'} | {name}"
            f"{' --rrs ' + str(rrs) if rrs else ''} | {s['route_reflectors']} "
            f"| {s['cluster_ids']} | {rng(s['clients_per_rr'])} | {rng(s['rr_peers_per_rr'])} "
            f"| {rng(s['sessions_per_rr'])} | {rng(s['sessions_per_client'])} "
            f"| {s['bgppeer_objects']} |\n"
        )


if __name__ == "__main__":
    main()
