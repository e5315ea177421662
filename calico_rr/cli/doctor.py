"""``calico-rr doctor``: a cluster's configuration against the scale advice."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from calico_rr.cli.base import (
    ContextOpt,
    Datastore,
    JsonOpt,
    KubeconfigOpt,
    OutputFormat,
    OutputOpt,
    _guard,
    app,
    echo_data,
    is_data,
    output_format,
    with_datastore_options,
)
from calico_rr.errors import InputError

DUMP_HELP = (
    "Check a dump instead of a live cluster ('-' = stdin): `kubectl get nodes,ippools,"
    "bgpconfigurations,bgppeers,felixconfigurations,clusterinformations,deployments -A -o yaml`."
)


@app.command()
@with_datastore_options
def doctor(
    datastore: Datastore,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    resources: Annotated[str | None, typer.Option(help=DUMP_HELP)] = None,
    session_budget: Annotated[
        int, typer.Option("--session-budget", help="Sessions one RR may hold (rr-overloaded).")
    ] = 500,
    output: OutputOpt = OutputFormat.table,
    as_json: JsonOpt = False,
) -> None:
    """Check a Calico cluster against the scale advice (mesh, RRs, encapsulation, Typha).

    Reads a dump (--resources), the Kubernetes API, or Calico's etcd
    (DATASTORE_TYPE=etcdv3 / --datastore-type etcdv3, ETCD_* variables).
    Exit code 0: no error-severity finding; 1: at least one; 2: bad input.  See
    docs/DOCTOR.md for every check."""
    from calico_rr.core.doctor.checks import diagnose

    def check() -> tuple[list[Any], Any]:
        if resources is not None and (kubeconfig is not None or context is not None):
            raise InputError("give either --resources FILE or --kubeconfig/--context, not both")
        if session_budget < 1:
            raise InputError(f"must be >= 1, got {session_budget}", field="--session-budget")
        if resources is not None:
            from calico_rr.adapters.kube.inventory import load_dump

            inventory = load_dump(resources)
        else:
            if kubeconfig is not None and datastore.is_etcd:
                raise InputError("give either --kubeconfig or the etcd datastore, not both")
            from calico_rr.adapters.etcd.inventory import load_etcd
            from calico_rr.adapters.kube.inventory import load_live

            inventory = datastore.session(kubeconfig, context, on_etcd=load_etcd, on_kube=load_live)
        return diagnose(inventory, session_budget=session_budget), inventory

    findings, inventory = _guard(check)
    fmt = output_format(output, as_json)
    if is_data(fmt):
        data = {"findings": [f.to_dict() for f in findings], "notes": list(inventory.notes)}
        echo_data(data, fmt)
    else:
        _print_findings(findings, inventory, wide=fmt == OutputFormat.wide)
    raise typer.Exit(1 if any(f.severity == "error" for f in findings) else 0)


def _print_findings(findings: list[Any], inventory: Any, *, wide: bool = False) -> None:
    from rich.text import Text

    from calico_rr.core.doctor.checks import summary_counts

    console = Console()
    state = inventory.state
    console.print(
        f"checked {len(state.nodes)} nodes, {len(state.peers)} BGPPeers, "
        f"{len(inventory.pools)} IPPools, {len(inventory.deployments)} Deployments "
        f"({inventory.api_group or 'no Calico API group'}, "
        f"{'Kubernetes' if inventory.kdd else 'etcd'} datastore)"
    )
    if findings:
        table = Table(title="calico-rr doctor", show_lines=True)
        table.add_column("Severity", no_wrap=True)
        # wide: the object and the fix in columns of their own (one line each to grep)
        table.add_column("Check" if wide else "Check / object", overflow="fold", ratio=1)
        if wide:
            table.add_column("Object", overflow="fold", ratio=1)
        table.add_column("Finding" if wide else "Finding / fix", overflow="fold", ratio=3)
        if wide:
            table.add_column("Fix", overflow="fold", ratio=2)
        colour = {"error": "red", "warning": "yellow", "info": "cyan"}
        for f in findings:
            sev = f.severity.value
            check = Text(f.id, style="bold")
            finding = Text(f.message)
            if wide:
                cells = [check, Text(f.object, style="dim"), finding, Text(f.fix, style="green")]
            else:
                check.append("\n" + f.object, style="dim")
                finding.append("\nfix: " + f.fix, style="green")
                cells = [check, finding]
            table.add_row(Text(sev, style=colour[sev]), *cells)
        console.print(table)
    counts = summary_counts(findings)
    total = ", ".join(
        f"{n} {sev}{'s' if n != 1 and sev != 'info' else ''}" for sev, n in counts.items()
    )
    console.print(total if findings else "no findings", highlight=False)
    for note in inventory.notes:
        console.print(f"note: {note}", style="dim", markup=False, highlight=False)
