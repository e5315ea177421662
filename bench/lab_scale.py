"""The scale lab's curves (issue 18): real BIRD from 100 to 1000 nodes.

    sudo .venv/bin/python bench/lab_scale.py --sizes 100,250,500,1000 \
        --topologies hierarchy,multi --also single,quorum --out lab_scale.json \
        --plot docs/lab_scale.png

For each (topology, size) one ``calico-rr lab --scale`` run (:func:`run_scale`):
a cold start of the planner's configuration on that many BIRDs, checked against
the verifier node by node, then measured (seconds to converge, RSS and CPU of
every BIRD, RR routes and updates, the busiest RR crashed and stopped).  The
``--also`` topologies run at the largest size only.  Each result is written to
``--out`` as soon as it exists, so an interrupted sweep keeps what it measured;
``--replot FILE`` draws the figure and prints the table from a saved sweep;
``--merge FILE`` adds this run's results to a saved sweep (``--no-failover``:
cold starts only, e.g. ``--sizes 1000 --topologies single,quorum --also ''``).

Growth is fitted as y = a * N^b (least squares on log-log) over the sizes that
converged; the table gives b per topology.  Needs root and BIRD.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

from lab_convergence import machine

from calico_rr.adapters.lab.scale import ScaleOptions, run_scale
from calico_rr.sandbox.lab_tools import ensure_lab_tools

#: (label, how to read it from a result)
CURVES: list[tuple[str, Any]] = [
    ("seconds to converge (cold start)", lambda r: r.get("seconds_to_converge")),
    ("RR RSS, max (MB)", lambda r: r["bird"]["route_reflectors"]["rss_mb"]["max"]),
    ("client RSS, median (MB)", lambda r: r["bird"]["clients"]["rss_mb"]["median"]),
    ("RR CPU, max (s)", lambda r: r["bird"]["route_reflectors"]["cpu_s"]["max"]),
    ("RR routes (paths), max", lambda r: r["route_reflector_figures"]["routes"]["max"]),
]
LOSS = [
    ("crash (graceful restart)", "crash_graceful_restart"),
    ("clean stop", "clean_stop"),
]


def growth(points: list[tuple[int, float]]) -> float | None:
    """b of y = a * N^b, least squares on log-log (None: fewer than 2 positive points)."""
    pts = [(math.log(n), math.log(y)) for n, y in points if y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return round(sum((x - mx) * (y - my) for x, y in pts) / sxx, 2) if sxx else None


def _by_topology(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        out.setdefault(r["topology"], []).append(r)
    return {t: sorted(rs, key=lambda r: r["nodes"]) for t, rs in out.items()}


def table(results: list[dict[str, Any]]) -> str:
    head = "| topology | N | RRs | converge s | RR RSS MB | client RSS MB | RR CPU s |"
    head += " RR paths | updates/predicted | loss s crash / stop | RR back s crash / stop |"
    lines = [head, "|" + "---|" * 11]
    for topo, rs in _by_topology(results).items():
        for r in rs:
            fo = r.get("failover", {})
            loss = " / ".join(str(fo.get(k, {}).get("loss_seconds_max", "-")) for _, k in LOSS)
            back = " / ".join(str(fo.get(k, {}).get("seconds_until_rr_back", "-")) for _, k in LOSS)
            ratio = r["route_reflector_figures"]["updates_received_over_predicted"].get("median")
            lines.append(
                f"| {topo} | {r['nodes']} | {r['route_reflectors']} | {r['seconds_to_converge']} "
                f"| {CURVES[1][1](r)} | {CURVES[2][1](r)} | {CURVES[3][1](r)} | {CURVES[4][1](r)} "
                f"| {ratio} | {loss} | {back} |"
            )
    for topo, rs in _by_topology(results).items():
        if len(rs) > 1:
            fits = ", ".join(
                f"{label}: N^{growth([(r['nodes'], read(r)) for r in rs if r['converged']])}"
                for label, read in CURVES
            )
            lines.append(f"\n{topo} growth: {fits}")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [CURVES[0], CURVES[1], CURVES[2]]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for ax, (label, read) in zip(axes, panels, strict=False):
        for topo, rs in _by_topology(results).items():
            pts = [(r["nodes"], read(r)) for r in rs if r["converged"]]
            b = growth(pts)
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"{topo} (~N^{b})")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("nodes")
        ax.legend(fontsize=8)
    ax = axes[3]
    for topo, rs in _by_topology(results).items():
        for name, key in LOSS:
            pts = [
                (r["nodes"], r["failover"][key]["loss_seconds_max"]) for r in rs if "failover" in r
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"{topo}, {name}")
    ax.set_title(
        "longest route loss of a sampled client\nwhen the busiest RR goes (s)", fontsize=10
    )
    ax.set_xlabel("nodes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100,250,500,1000")
    ap.add_argument("--topologies", default="hierarchy,multi")
    ap.add_argument("--also", default="single,quorum", help="at the largest size only")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--no-failover", action="store_true", help="cold starts only")
    ap.add_argument("--redundancy", type=int, help="RRs per client (default: the planner's)")
    ap.add_argument("--merge", type=Path, help="a saved sweep these results are added to")
    ap.add_argument("--out", type=Path, default=Path("lab_scale.json"))
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--replot", type=Path, help="a saved sweep: plot and print only")
    args = ap.parse_args()
    if args.replot:
        saved = json.loads(args.replot.read_text())
        print(table(saved["results"]))
        if args.plot:
            plot(saved["results"], args.plot)
        return
    # a kill unwinds too: the lab's namespaces go and the host's neighbour
    # limits are put back (without this, SIGTERM left them raised)
    signal.signal(signal.SIGTERM, lambda signum, _f: sys.exit(128 + signum))
    ensure_lab_tools()
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = [(t, n) for t in args.topologies.split(",") for n in sizes]
    runs += [(t, max(sizes)) for t in args.also.split(",") if t]
    doc: dict[str, Any] = {"machine": machine(), "results": []}
    if args.merge:
        doc = json.loads(args.merge.read_text())
    for topo, n in runs:
        t0 = time.monotonic()
        print(f"{topo} {n}: running", file=sys.stderr, flush=True)
        result = run_scale(
            ScaleOptions(
                n,
                topology=topo,
                timeout=args.timeout,
                failover=not args.no_failover,
                redundancy=args.redundancy,
            ),
            progress=lambda line: print(f"  {line}", file=sys.stderr, flush=True),
        )
        doc["results"].append(result)
        args.out.write_text(json.dumps(doc, indent=1))
        print(f"{topo} {n}: {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    print(table(doc["results"]))
    if args.plot:
        plot(doc["results"], args.plot)


if __name__ == "__main__":
    main()
