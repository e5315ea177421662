"""BGP lab: convergence time of real BIRD daemons versus node count.

    sudo .venv/bin/python bench/lab_convergence.py --sizes 10,20,40,80 --repeats 3

For each (topology, size, repeat) a fresh :class:`LabNetwork` (one namespace and
one BIRD 1.6 per node) is built and the topology's Calico state is applied with
:class:`LabAgent`; the clock starts just before the first BIRD is started with its
config and stops at the first poll of a stable window in which every expected
session is Established and every node holds exactly what the verifier predicts
(``LabAgent.wait``).  ``mesh`` is Calico's full node-to-node mesh (the node
documents only, default BGPConfiguration); the other topologies come from the
planner (``synthetic_cluster(n, zones=3, racks=4)``).

It also measures, for every planned topology, the re-convergence after switching
a converged full-mesh lab to it with ``agent.apply`` (BIRD level: config files
rewritten and ``configure`` per changed node, no operator); those labs' own
cold starts on the mesh are the ``mesh`` samples.

Reported per (topology, size): medians over the samples of seconds to converge,
the time spent starting the daemons, sessions, BIRD reloads and the peak of the
summed VmRSS of all BIRD processes (sampled every 0.2 s).  When a size does not
converge within ``--timeout`` seconds, it is recorded and no larger size is tried.
Needs root (network namespaces) and BIRD (scripts/lab-install.sh).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.net import LabNetwork
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.formats.kube import node_to_k8s
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import CalicoState, Node
from calico_rr.sandbox.lab_tools import ensure_lab_tools

MESH = "mesh"


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": list(os.getloadavg()),
    }


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def bird_rss_kib(lab: LabNetwork) -> int:
    """Sum of VmRSS of every running BIRD of the lab."""
    return sum(rss_kib(n.proc.pid) for n in lab.nodes if n.proc is not None and n.running)


@contextmanager
def rss_peak(lab: LabNetwork, period: float = 0.2) -> Iterator[Callable[[], int]]:
    """Samples the lab's summed BIRD RSS in a thread; yields a getter of the peak."""
    peak = [0]
    stop = threading.Event()

    def loop() -> None:
        while True:
            peak[0] = max(peak[0], bird_rss_kib(lab))
            if stop.wait(period):
                return

    t = threading.Thread(target=loop, name="rss-peak", daemon=True)
    t.start()
    try:
        yield lambda: peak[0]
    finally:
        stop.set()
        t.join()
        peak[0] = max(peak[0], bird_rss_kib(lab))


def lab_nodes(lab: LabNetwork) -> list[Node]:
    synthetic = synthetic_cluster(len(lab.nodes), zones=3, racks=4)
    return [
        dataclasses.replace(n, name=ln.name, ip=ln.ip)
        for n, ln in zip(synthetic, lab.nodes, strict=True)
    ]


def topology_state(nodes: list[Node], topology: str) -> tuple[CalicoState, str]:
    """The Calico state of ``topology`` and the topology the planner chose."""
    if topology == MESH:
        return parse_resources([node_to_k8s(n) for n in nodes]).state, MESH
    p = plan(nodes, PlanConfig(topology=topology))  # type: ignore[arg-type]
    return parse_resources(p.calico_documents()).state, p.topology


def measure(agent: LabAgent, state: CalicoState, timeout: float, stable: float) -> dict[str, Any]:
    """Apply ``state`` and wait for convergence; one sample."""
    reloads0 = agent.reloads
    with rss_peak(agent.lab) as peak:
        t0 = time.monotonic()
        changed = agent.apply(state)
        applied = time.monotonic() - t0
        st = agent.wait(timeout, stable=stable, since=t0)
        rss = peak()
    return {
        "converged": bool(st["converged"]),
        "seconds_to_converge": st["seconds_to_converge"],
        "seconds_apply": round(applied, 2),
        "nodes_changed": len(changed),
        "sessions_expected": st["sessions_expected"],
        "sessions_established": st["sessions_established"],
        "matches_verifier": st["matches_verifier"],
        "bird_reachable": st["bird_reachable"],
        "missing_pairs": st["missing_pairs"],
        "bird_reloads": agent.reloads - reloads0,
        "bird_rss_peak_kib": rss,
    }


def run_case(
    size: int, topology: str, *, transition: bool, timeout: float, stable: float
) -> list[dict[str, Any]]:
    """One fresh lab: a cold start on ``topology`` (or on the mesh, then the switch
    to ``topology`` when ``transition``).  One sample per measured step."""
    out: list[dict[str, Any]] = []
    t_build = time.monotonic()
    with LabNetwork(size) as lab:
        build = round(time.monotonic() - t_build, 2)
        nodes = lab_nodes(lab)
        agent = LabAgent(lab)
        first = MESH if transition else topology
        state, chosen = topology_state(nodes, first)
        sample = measure(agent, state, timeout, stable)
        out.append({"kind": "cold", "topology": chosen, "size": size, "build": build, **sample})
        if transition and sample["converged"]:
            state, chosen = topology_state(nodes, topology)
            sample = measure(agent, state, timeout, stable)
            out.append({"kind": "switch", "topology": f"mesh -> {chosen}", "size": size, **sample})
    return out


def median(values: list[Any]) -> Any:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    m = statistics.median(vals)
    return round(m, 2) if isinstance(m, float) else m


def summarize(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for s in samples:
        groups.setdefault((s["kind"], s["topology"], s["size"]), []).append(s)
    rows = []
    for (kind, topology, size), group in groups.items():
        rows.append(
            {
                "kind": kind,
                "topology": topology,
                "size": size,
                "samples": len(group),
                "converged": sum(1 for s in group if s["converged"]),
                "seconds_to_converge": median([s["seconds_to_converge"] for s in group]),
                "seconds_to_converge_max": max(
                    (s["seconds_to_converge"] for s in group if s["converged"]), default=None
                ),
                "seconds_apply": median([s["seconds_apply"] for s in group]),
                "sessions": median([s["sessions_expected"] for s in group]),
                "bird_reloads": median([s["bird_reloads"] for s in group]),
                "bird_rss_peak_mib": median(
                    [round(s["bird_rss_peak_kib"] / 1024, 1) for s in group]
                ),
            }
        )
    order = {"cold": 0, "switch": 1}
    rows.sort(key=lambda r: (order[r["kind"]], r["topology"] != MESH, r["topology"], r["size"]))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| step | topology | nodes | converged | to converge (median / max) | daemons started"
        " / configs applied in | sessions | BIRD reloads | BIRD RSS peak (sum) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        conv = r["seconds_to_converge"]
        mx = r["seconds_to_converge_max"]
        lines.append(
            f"| {r['kind']} | {r['topology']} | {r['size']} | {r['converged']}/{r['samples']} "
            f"| {'-' if conv is None else f'{conv} s'} / {'-' if mx is None else f'{mx} s'} "
            f"| {r['seconds_apply']} s | {r['sessions']} | {r['bird_reloads']} "
            f"| {r['bird_rss_peak_mib']} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sizes", default="10,20,40,80", help="node counts, increasing")
    ap.add_argument("--topologies", default="single,multi,hierarchy,mesh")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=180.0, help="per convergence, seconds")
    ap.add_argument("--stable", type=float, default=1.0, help="stable window, seconds")
    ap.add_argument(
        "--budget", type=float, default=0.0, help="stop starting new labs after this many seconds"
    )
    ap.add_argument("--no-switch", action="store_true", help="skip the mesh -> topology switch")
    ap.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    ap.add_argument("--out", help="also write the JSON here (rewritten after every lab)")
    args = ap.parse_args(argv)

    def interrupted(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds: every LabNetwork is closed

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started with & (SIG_IGN)

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    topologies = [t.strip() for t in args.topologies.split(",") if t.strip()]
    planned = [t for t in topologies if t != MESH]
    ensure_lab_tools()
    info = machine()
    t_start = time.monotonic()
    started_utc = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    samples: list[dict[str, Any]] = []
    stopped: str | None = None

    def result() -> dict[str, Any]:
        return {
            "machine": info,
            "command": " ".join(sys.argv),
            "started_utc": started_utc,
            "wall_seconds": round(time.monotonic() - t_start, 1),
            "loadavg_end": list(os.getloadavg()),
            "stopped": stopped,
            "rows": summarize(samples),
            "samples": samples,
        }

    def log(msg: str) -> None:
        print(
            f"[{time.monotonic() - t_start:7.1f}s load {os.getloadavg()[0]:.2f}] {msg}",
            file=sys.stderr,
            flush=True,
        )

    # (topology, transition): cold starts of each topology; mesh cold starts come
    # from the switch labs when there are any
    cases: list[tuple[str, bool]] = [(t, False) for t in planned]
    if MESH in topologies:
        if args.no_switch or not planned:
            cases.append((MESH, False))
        else:
            cases += [(t, True) for t in planned]
    elif not args.no_switch:
        cases += [(t, True) for t in planned]

    for size in sizes:
        failed = False
        for rep in range(args.repeats):
            for topology, transition in cases:
                if args.budget and time.monotonic() - t_start > args.budget:
                    stopped = f"budget of {args.budget:.0f} s used up before size {size} rep {rep}"
                    break
                got = run_case(
                    size,
                    topology,
                    transition=transition,
                    timeout=args.timeout,
                    stable=args.stable,
                )
                for s in got:
                    s["repeat"] = rep
                    log(
                        f"{s['kind']} {s['topology']} n={size} rep={rep}: "
                        f"converged={s['converged']} in {s['seconds_to_converge']} s, "
                        f"sessions {s['sessions_established']}/{s['sessions_expected']}, "
                        f"reloads {s['bird_reloads']}, rss {s['bird_rss_peak_kib'] / 1024:.1f} MiB"
                    )
                samples += got
                if any(not s["converged"] for s in got):
                    failed = True
                if args.out:
                    with open(args.out, "w") as f:
                        json.dump(result(), f, indent=2)
            if stopped:
                break
        if stopped:
            break
        if failed:
            stopped = f"size {size} did not converge within {args.timeout:.0f} s: not growing"
            break

    res = result()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
    if args.json:
        json.dump(res, sys.stdout, indent=2)
        print()
    else:
        m = res["machine"]
        print(
            f"machine: nproc {m['nproc']}, {m['cpu_model']}, load at start "
            f"{' '.join(f'{x:.2f}' for x in m['loadavg_start'])}; wall {res['wall_seconds']} s"
        )
        if stopped:
            print(f"stopped: {stopped}")
        print(markdown(res["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
