"""``calico-rr lab``: real BIRD daemons driven like calico-node (needs root)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from calico_rr.cli.base import (
    JsonOpt,
    OutputFormat,
    OutputOpt,
    TopologyOpt,
    _guard,
    app,
    emit,
    is_data,
    output_format,
    print_result,
    progress_printer,
)
from calico_rr.errors import InputError

ScenariosOpt = Annotated[
    bool,
    typer.Option(
        help="With the operator: also scale up, scale down, kill an RR's BIRD, "
        "cordon an RR, switch the topology and uninstall back to the full mesh, each "
        "watched by the route sampler."
    ),
]
DedicatedOpt = Annotated[
    int,
    typer.Option(
        help="Nodes without workloads (no pod block) labelled as dedicated RR nodes; "
        "the operator then picks RRs only among them."
    ),
]
RendererOpt = Annotated[
    str,
    typer.Option(
        help="Who renders each node's BIRD config: 'confd' (Calico's own, built by "
        "scripts/calico-build.sh) or 'imitation' (the project's core.lab.bird)."
    ),
]
ScaleOpt = Annotated[
    bool,
    typer.Option(
        help="The scale mode (up to 1000 nodes): no API server and no mesh; the "
        "planner's configuration cold-started on every BIRD at once, checked against "
        "the verifier node by node, then measured (convergence, RSS and CPU per "
        "BIRD, RR routes and updates, the busiest RR stopped and crashed).",
    ),
]
FailoverOpt = Annotated[
    bool, typer.Option(help="With --scale: also stop and crash the busiest RR (route sampler on).")
]
ScaleRedundancyOpt = Annotated[
    int | None, typer.Option(help="With --scale: RRs per client [default: the planner's].")
]
ScaleRrsOpt = Annotated[
    int | None, typer.Option(help="With --scale: the RR count, overriding the planner's sizing.")
]
LabFamilyOpt = Annotated[
    str,
    typer.Option(
        "--ip-family",
        help="ipv4 | ipv6 | dual: the addresses the lab's nodes announce; with IPv6 "
        "each node also runs bird6 on confd's bird6.cfg (confd renderer only).",
    ),
]


@app.command()
def lab(
    nodes: Annotated[int, typer.Option(help="Emulated Calico nodes (namespaces + BIRD).")] = 16,
    topology: TopologyOpt = "auto",
    zones: Annotated[int, typer.Option(help="Zones to spread the nodes over.")] = 3,
    racks: Annotated[int, typer.Option(help="Rack labels (hierarchy), 0 = none.")] = 0,
    operator: Annotated[
        bool,
        typer.Option(
            "--operator/--no-operator",
            help="Run the operator from the full mesh (default), or apply the rendered plan.",
        ),
    ] = True,
    scenarios: ScenariosOpt = False,
    dedicated: DedicatedOpt = 0,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for each convergence [default: 180, 900 with --scale]."),
    ] = None,
    scale: ScaleOpt = False,
    failover: FailoverOpt = True,
    redundancy: ScaleRedundancyOpt = None,
    rrs: ScaleRrsOpt = None,
    renderer: RendererOpt = "confd",
    ip_family: LabFamilyOpt = "ipv4",
    cleanup: Annotated[
        bool, typer.Option(help="Only remove what labs whose process died left behind.")
    ] = False,
    output: OutputOpt = OutputFormat.table,
    as_json: JsonOpt = False,
) -> None:
    """Real BIRD 1.6 daemons in network namespaces, driven like calico-node from a
    local API server; compares BIRD's routes with the verifier (needs root)."""
    from calico_rr.adapters.lab.runner import run_lab
    from calico_rr.adapters.lab.scale import ScaleOptions, run_scale

    fmt = output_format(output, as_json)
    _guard(lambda: _check_family(ip_family, renderer))
    if cleanup:
        _cleanup(fmt)
        return
    if scale:
        _guard(lambda: _check_scale(nodes, ip_family, scenarios, dedicated))
        options = ScaleOptions(
            nodes,
            topology,
            zones,
            racks,
            timeout or 900.0,
            failover,
            redundancy=redundancy,
            rrs=rrs,
        )
        _print_scale(_unwinding_on_sigterm(lambda: run_scale(options, **_scale_feedback())), fmt)
        return
    progress = progress_printer(fmt)
    timeout = timeout or 180.0
    result = _unwinding_on_sigterm(
        lambda: run_lab(
            nodes=nodes,
            topology=topology,
            zones=zones,
            racks=racks,
            operator=operator,
            scenarios=scenarios,
            dedicated=dedicated,
            progress=progress,
            timeout=timeout,
            renderer=renderer,
            ip_family=ip_family,
        )
    )
    print_result(result, "calico-rr lab", fmt=fmt, skip=("steps",))
    if not is_data(fmt):
        _print_steps(result)
    ok = result.get("matches_verifier") and result.get("bird_reachable")
    if not ok or result.get("route_losses_outside_role_changes"):
        raise typer.Exit(1)


def _print_steps(result: dict[str, Any]) -> None:
    for step in result.get("steps", []):
        typer.echo(
            f"{step['step']}: converged in {step.get('seconds_to_converge')}s, "
            f"route losses {step.get('route_losses', 0)} "
            f"(outside RR role changes: {step.get('route_losses_outside_role_changes', 0)})"
        )


def _check_scale(nodes: int, ip_family: str, scenarios: bool, dedicated: int) -> None:
    """What the scale mode does not do: a one-line error before any lab."""
    from calico_rr.adapters.lab.net import MAX_NODES

    if not 2 <= nodes <= MAX_NODES:
        raise InputError(f"the scale lab takes 2..{MAX_NODES} nodes, got {nodes}")
    if ip_family != "ipv4" or scenarios or dedicated:
        raise InputError(
            "--scale runs IPv4 clusters from the planner's configuration: it takes no "
            "--ip-family, --scenarios or --dedicated"
        )


def _scale_feedback() -> dict[str, Any]:
    """Progress lines and a bar for the long phases, on stderr whatever the output
    format (a 1000-node run takes minutes): drawn in place on a terminal, one line
    per tenth otherwise."""
    tty = sys.stderr.isatty()
    shown: dict[str, int] = {}

    def line(text: str) -> None:
        typer.echo(text, err=True)

    def bar(phase: str, done: int, total: int) -> None:
        if tty:
            filled = 30 * done // max(total, 1)
            end = "\n" if done >= total else ""
            sys.stderr.write(f"\r{phase} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}{end}")
            sys.stderr.flush()
            return
        tenth = 10 * done // max(total, 1)
        if tenth != shown.get(phase):
            shown[phase] = tenth
            line(f"{phase}: {done}/{total}")

    return {"progress": line, "bar": bar}


def _print_scale(result: dict[str, Any], fmt: OutputFormat) -> None:
    """The JSON/YAML summary, or its main lines; exit 1 unless it converged equal
    to the verifier."""
    emit(result, fmt, _scale_lines(result))
    if not (result.get("converged") and result.get("matches_verifier")):
        raise typer.Exit(1)


def _scale_lines(r: dict[str, Any]) -> list[str]:
    bird, rr = r["bird"], r["route_reflector_figures"]
    lines = [
        f"{r['nodes']} nodes, {r['topology']}, {r['route_reflectors']} route reflectors",
        f"cold start: converged={r['converged']} in {r['seconds_to_converge']} s, "
        f"{r['sessions_established']}/{r['sessions_expected']} sessions; {r['comparison']}",
        f"BIRD RSS MB: clients median {bird['clients']['rss_mb'].get('median')}, "
        f"route reflectors max {bird['route_reflectors']['rss_mb'].get('max')}; "
        f"RR CPU s max {bird['route_reflectors']['cpu_s'].get('max')}",
        f"per RR (max): {rr['sessions'].get('max')} sessions, {rr['routes'].get('max')} "
        f"paths held; updates received / verifier's prefixes "
        f"{rr['updates_received_over_predicted'].get('median')} (median)",
    ]
    failover = r.get("failover") or {}
    if "aborted" in failover:
        lines.append(f"failover: {failover['aborted']}")
    for case in ("crash_graceful_restart", "clean_stop"):
        if case in failover:
            run = failover[case]
            lines.append(
                f"{failover['route_reflector']} {case.replace('_', ' ')}: "
                f"{run['clients_with_loss']} of {failover['sampled_clients']} sampled clients "
                f"lost a route (longest {run['loss_seconds_max']} s); back with every "
                f"route after {run['seconds_until_rr_back']} s"
            )
    lines.append(f"{r['seconds_total']} s in all")
    return lines


def _cleanup(fmt: OutputFormat) -> None:
    """``lab --cleanup``: remove what labs whose process died left behind."""
    from calico_rr.adapters.lab.net import cleanup_stale

    removed = _guard(cleanup_stale)
    emit({"removed": removed}, fmt, [f"removed {len(removed)} labs"])


def _check_family(ip_family: str, renderer: str) -> None:
    """Bad --ip-family (or IPv6 on the imitation): a one-line error before any lab."""
    if ip_family not in ("ipv4", "ipv6", "dual"):
        raise InputError(f"--ip-family must be ipv4, ipv6 or dual, got {ip_family!r}")
    if ip_family != "ipv4" and renderer != "confd":
        raise InputError(
            f"--ip-family {ip_family} runs on --renderer confd only "
            "(the imitation renders IPv4 BIRD configs)"
        )


def _unwinding_on_sigterm(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run`` (errors as _guard reports them) with SIGTERM raising KeyboardInterrupt,
    as Ctrl-C does: the lab unwinds, removing every namespace and daemon; exit 130."""

    def on_term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return _guard(run)
    except KeyboardInterrupt:
        typer.echo("calico-rr: interrupted; the lab was removed", err=True)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
