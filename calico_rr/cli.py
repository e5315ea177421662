"""The ``calico-rr`` command: a thin adapter around the core.

It turns flags into a :class:`PlanConfig`, reads nodes (a file or the
synthetic generator), calls the pure core, and prints.  Bad input of any
kind is reported as one line on stderr with exit code 2, and nothing is written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from calico_rr.core.config import (
    API_GROUPS,
    RACK_LABEL,
    LinearSizing,
    PlanConfig,
    Sizing,
    parse_steps,
)
from calico_rr.errors import CalicoRRError
from calico_rr.model import ZONE_LABEL, Node

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Route reflectors for Calico BGP at scale: plan, render, verify.",
)

EXIT_BAD_INPUT = 2
T = TypeVar("T")


def _fail(message: str) -> NoReturn:
    typer.echo(f"calico-rr: error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn our errors into exit code 2 with a clear message."""
    try:
        return fn()
    except CalicoRRError as exc:
        _fail(str(exc))


# -- shared options -------------------------------------------------------------

NodesOpt = Annotated[
    int | None, typer.Option("--nodes", help="Synthetic cluster: number of nodes.")
]
NodesFileOpt = Annotated[
    str | None,
    typer.Option("--nodes-file", help="Kubernetes NodeList (YAML or JSON, '-' = stdin)."),
]
ZonesOpt = Annotated[int, typer.Option(help="Synthetic cluster: number of zones.")]
RacksOpt = Annotated[
    int | None,
    typer.Option(help="Racks: synthetic rack labels, and generated racks for unlabelled nodes."),
]
UnhealthyOpt = Annotated[
    float, typer.Option(help="Synthetic cluster: share of unhealthy nodes, 0 to <1.")
]
TopologyOpt = Annotated[str, typer.Option(help="auto | single | multi | quorum | hierarchy.")]
RrsOpt = Annotated[int | None, typer.Option(help="Explicit RR count (overrides sizing).")]
RedundancyOpt = Annotated[int, typer.Option(help="RRs per client (rack RRs per rack).")]
RatioOpt = Annotated[float, typer.Option(help="Linear sizing: RRs per ready node.")]
MinOpt = Annotated[int, typer.Option("--min-rrs", help="Linear sizing: minimum RRs.")]
MaxOpt = Annotated[int, typer.Option("--max-rrs", help="Linear sizing: maximum RRs.")]
StepsOpt = Annotated[
    str | None,
    typer.Option(help="Stepping sizing instead of linear, e.g. '200:3,1000:5,5000:25'."),
]
PerZoneOpt = Annotated[
    bool, typer.Option("--per-zone-sizing", help="Size each zone on its own node count.")
]
BudgetOpt = Annotated[
    int, typer.Option("--session-budget", help="Per-RR session budget for auto/hierarchy.")
]
SpinesOpt = Annotated[int, typer.Option(help="Spine RRs (hierarchy).")]
ZoneLabelOpt = Annotated[str, typer.Option(help="Zone label ('' = ignore zones).")]
RackLabelOpt = Annotated[str, typer.Option(help="Rack label (hierarchy).")]
PreferredOpt = Annotated[
    str | None, typer.Option(help="Prefer nodes with this label as RRs (key or key=value).")
]
DedicatedOpt = Annotated[
    str | None, typer.Option(help="Only nodes with this label may be RRs (key or key=value).")
]
IncompatibleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--incompatible-label",
        help="Never an RR: key=value, key= (empty value) or key (present). Repeatable.",
    ),
]
ClusterIdOpt = Annotated[
    str, typer.Option(help="Cluster IDs are allocated after this dotted quad.")
]
ApiGroupOpt = Annotated[
    str, typer.Option(help="BGPPeer/BGPConfiguration API group: v1 (crd.projectcalico.org) or v3.")
]
RestartOpt = Annotated[
    str | None, typer.Option(help="BGPPeer maxRestartTime (graceful restart), e.g. 120s.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@dataclass(frozen=True)
class Inputs:
    nodes: list[Node]
    notes: list[str]
    config: PlanConfig


def _api_group(text: str) -> str:
    aliases = {"v1": API_GROUPS[0], "v3": API_GROUPS[1]}
    return aliases.get(text, text)


def load_inputs(
    *,
    nodes: int | None,
    nodes_file: str | None,
    zones: int,
    racks: int | None,
    unhealthy: float,
    topology: str,
    rrs: int | None,
    redundancy: int,
    ratio: float,
    min_rrs: int,
    max_rrs: int,
    steps: str | None,
    per_zone_sizing: bool,
    session_budget: int,
    spines: int,
    zone_label: str,
    rack_label: str,
    preferred_label: str | None,
    dedicated_label: str | None,
    incompatible_label: list[str] | None,
    cluster_id_base: str,
    api_group: str,
    max_restart_time: str | None,
) -> Inputs:
    """Flags -> (nodes, notes, config).  Raises CalicoRRError on bad input."""
    from calico_rr.core.synthetic import synthetic_cluster
    from calico_rr.errors import InputError

    sizing: Sizing = (
        parse_steps(steps) if steps else LinearSizing(ratio=ratio, minimum=min_rrs, maximum=max_rrs)
    )
    config = PlanConfig(
        topology=topology,  # type: ignore[arg-type]  # validated by PlanConfig
        redundancy=redundancy,
        sizing=sizing,
        rrs=rrs,
        per_zone_sizing=per_zone_sizing,
        session_budget=session_budget,
        zone_label=zone_label or None,
        rack_label=rack_label,
        racks=racks if nodes_file is not None else None,
        spines=spines,
        preferred_label=preferred_label,
        dedicated_label=dedicated_label,
        incompatible_labels=tuple(incompatible_label or ()),
        cluster_id_base=cluster_id_base,
        api_group=_api_group(api_group),  # type: ignore[arg-type]
        max_restart_time=max_restart_time,
    )
    if (nodes is None) == (nodes_file is None):
        raise InputError("give exactly one of --nodes N (synthetic) or --nodes-file PATH")
    if nodes_file is not None:
        from calico_rr.adapters.nodes_io import load_nodes

        loaded, notes = load_nodes(nodes_file)
        return Inputs(loaded, list(notes), config)
    assert nodes is not None
    generated = synthetic_cluster(
        nodes,
        zones=zones,
        racks=racks or 0,
        unhealthy=unhealthy,
        zone_label=zone_label or ZONE_LABEL,
        rack_label=rack_label,
    )
    return Inputs(generated, [], config)


# -- plan -----------------------------------------------------------------------


@app.command()
def plan(
    nodes: NodesOpt = None,
    nodes_file: NodesFileOpt = None,
    zones: ZonesOpt = 0,
    racks: RacksOpt = None,
    unhealthy: UnhealthyOpt = 0.0,
    topology: TopologyOpt = "auto",
    rrs: RrsOpt = None,
    redundancy: RedundancyOpt = 3,
    ratio: RatioOpt = 0.005,
    min_rrs: MinOpt = 3,
    max_rrs: MaxOpt = 25,
    steps: StepsOpt = None,
    per_zone_sizing: PerZoneOpt = False,
    session_budget: BudgetOpt = 500,
    spines: SpinesOpt = 3,
    zone_label: ZoneLabelOpt = ZONE_LABEL,
    rack_label: RackLabelOpt = RACK_LABEL,
    preferred_label: PreferredOpt = None,
    dedicated_label: DedicatedOpt = None,
    incompatible_label: IncompatibleOpt = None,
    cluster_id_base: ClusterIdOpt = "244.0.0.0",
    api_group: ApiGroupOpt = "v1",
    max_restart_time: RestartOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Size and place route reflectors; print the numbers (the talk's table)."""
    args = dict(locals())
    as_json = args.pop("as_json")
    from calico_rr.core.planner import plan as make_plan
    from calico_rr.core.summary import summarize

    def run() -> dict[str, Any]:
        inputs = load_inputs(**args)
        return summarize(make_plan(inputs.nodes, inputs.config), notes=inputs.notes)

    summary = _guard(run)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, sort_keys=False))
        return
    _print_summary(summary)


def _stat(s: dict[str, Any]) -> str:
    if s["min"] == s["max"]:
        return str(s["min"])
    return f"{s['min']}-{s['max']} (mean {s['mean']})"


def _print_summary(summary: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"calico-rr plan: {summary['topology']}", show_header=True)
    table.add_column("Numbers")
    table.add_column("", justify="right")
    rows = [
        ("# of nodes", str(summary["nodes"])),
        ("Topology", summary["topology"]),
        ("# of RRs", str(summary["route_reflectors"])),
        ("Redundancy", str(summary["redundancy"])),
        ("Cluster IDs", str(summary["cluster_ids"])),
        ("# of clients / RR", _stat(summary["clients_per_rr"])),
        ("# of RRs / RR", _stat(summary["rr_peers_per_rr"])),
        ("Connections / RR", _stat(summary["sessions_per_rr"])),
        ("Connections / client", _stat(summary["sessions_per_client"])),
        ("Total BGP sessions", str(summary["total_sessions"])),
        ("Full mesh would need", str(summary["full_mesh_sessions"])),
        ("BGPPeer objects", str(summary["bgppeer_objects"])),
    ]
    verification = summary.get("verification")
    if isinstance(verification, dict):
        rows.append(("Every node reaches every node", _yes(verification["reachable"])))
        rows.append(
            ("Survives any single RR failure", _yes(verification["single_rr_failure_tolerant"]))
        )
        rows.append(("Longest CLUSTER_LIST", str(verification["max_cluster_list"])))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if summary.get("auto_reason"):
        console.print(f"auto: {summary['auto_reason']}")
    for line in summary.get("shape_notes", []):
        console.print(line)
    for w in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


# -- render ---------------------------------------------------------------------


@app.command()
def render(
    nodes: NodesOpt = None,
    nodes_file: NodesFileOpt = None,
    zones: ZonesOpt = 0,
    racks: RacksOpt = None,
    unhealthy: UnhealthyOpt = 0.0,
    topology: TopologyOpt = "auto",
    rrs: RrsOpt = None,
    redundancy: RedundancyOpt = 3,
    ratio: RatioOpt = 0.005,
    min_rrs: MinOpt = 3,
    max_rrs: MaxOpt = 25,
    steps: StepsOpt = None,
    per_zone_sizing: PerZoneOpt = False,
    session_budget: BudgetOpt = 500,
    spines: SpinesOpt = 3,
    zone_label: ZoneLabelOpt = ZONE_LABEL,
    rack_label: RackLabelOpt = RACK_LABEL,
    preferred_label: PreferredOpt = None,
    dedicated_label: DedicatedOpt = None,
    incompatible_label: IncompatibleOpt = None,
    cluster_id_base: ClusterIdOpt = "244.0.0.0",
    api_group: ApiGroupOpt = "v1",
    max_restart_time: RestartOpt = None,
    include_nodes: Annotated[
        bool,
        typer.Option(
            "--include-nodes",
            help="Write every input node whole (its labels plus the plan's), not just changes.",
        ),
    ] = False,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write the Calico resources as a YAML stream for `kubectl apply --server-side`."""
    args = dict(locals())
    include = args.pop("include_nodes")
    out_path = args.pop("output")
    from calico_rr.core.planner import plan as make_plan

    def run() -> list[dict[str, Any]]:
        inputs = load_inputs(**args)
        return make_plan(inputs.nodes, inputs.config).resources(include_nodes=include)

    docs = _guard(run)
    # Everything is computed before anything is written: bad input writes nothing.
    text = yaml.dump_all(docs, Dumper=_dumper(), sort_keys=False, default_flow_style=False)
    if out_path is None:
        sys.stdout.write(text)
    else:
        with open(out_path, "w", encoding="utf-8") as fh:
            fh.write(text)


def _dumper() -> type[yaml.SafeDumper]:
    return getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
