"""``calico-rr lab``: real BIRD daemons driven like calico-node (needs root)."""

from __future__ import annotations

import json
import typing
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

if typing.TYPE_CHECKING:
    pass

from calico_rr.cli.base import (
    JsonOpt,
    TopologyOpt,
    _guard,
    app,
)


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
    scenarios: Annotated[
        bool,
        typer.Option(
            help="With the operator: also scale up, scale down, kill an RR's BIRD, "
            "cordon an RR, switch the topology and uninstall back to the full mesh, each "
            "watched by the route sampler."
        ),
    ] = False,
    dedicated: Annotated[
        int,
        typer.Option(
            help="Nodes without workloads (no pod block) labelled as dedicated RR nodes; "
            "the operator then picks RRs only among them."
        ),
    ] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each convergence.")] = 180,
    renderer: Annotated[
        str,
        typer.Option(
            help="Who renders each node's BIRD config: 'confd' (Calico's own, built by "
            "scripts/calico-build.sh) or 'imitation' (the project's core.lab.bird)."
        ),
    ] = "confd",
    cleanup: Annotated[
        bool, typer.Option(help="Only remove what labs whose process died left behind.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Real BIRD 1.6 daemons in network namespaces, driven like calico-node from a
    local API server; compares BIRD's routes with the verifier (needs root)."""
    import signal

    from calico_rr.adapters.lab.net import cleanup_stale
    from calico_rr.adapters.lab.runner import run_lab

    if cleanup:
        removed = _guard(cleanup_stale)
        typer.echo(json.dumps({"removed": removed}) if as_json else f"removed {len(removed)} labs")
        return

    def progress(line: str) -> None:
        if not as_json:
            typer.echo(line)

    def on_term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwind: every namespace and daemon is removed

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        result = _guard(
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
            )
        )
    except KeyboardInterrupt:
        typer.echo("calico-rr: interrupted; the lab was removed", err=True)
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        table = Table(title="calico-rr lab", show_header=False)
        for key, value in result.items():
            if key == "steps":
                continue
            table.add_row(key, str(value))
        Console().print(table)
        for step in result.get("steps", []):
            typer.echo(
                f"{step['step']}: converged in {step.get('seconds_to_converge')}s, "
                f"route losses {step.get('route_losses', 0)} "
                f"(outside RR role changes: {step.get('route_losses_outside_role_changes', 0)})"
            )
    ok = result.get("matches_verifier") and result.get("bird_reachable")
    if not ok or result.get("route_losses_outside_role_changes"):
        raise typer.Exit(1)
