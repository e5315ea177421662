"""The ``calico-rr`` command: a thin adapter around the core.

It turns flags into a :class:`PlanConfig`, reads nodes (a file or the
synthetic generator), calls the pure core, and prints.  Bad input of any
kind is reported as one line on stderr with exit code 2, and nothing is written.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from calico_rr.core.planning.config import (
    API_GROUPS,
    RACK_LABEL,
    LinearSizing,
    PlanConfig,
    Sizing,
    parse_steps,
)
from calico_rr.errors import CalicoRRError, InputError
from calico_rr.model import ZONE_LABEL, Node

if typing.TYPE_CHECKING:
    from calico_rr.adapters.etcd.client import EtcdClient
    from calico_rr.core.operator.safety import Verdict

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Route reflectors for Calico BGP at scale: plan, render, verify, run the operator.",
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
    except TimeoutError as exc:  # a wait gave up (uninstall): say so, no traceback
        typer.echo(f"calico-rr: error: {exc}", err=True)
        raise typer.Exit(1) from None


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
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Write even what the safety gate refuses (a configuration that would cut "
        "nodes off); for experts, says what it overrides.",
    ),
]
PlotSizesOpt = Annotated[
    str | None,
    typer.Option(
        "--plot-sizes",
        help="Cluster sizes to compare, e.g. '100,1000,5000' "
        "(default: 50,100,200,500,1k,2k,5k,10k and this plan's size).",
    ),
]


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
    from calico_rr.core.planning.synthetic import synthetic_cluster

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


# -- shared plan options ------------------------------------------------------------

#: The flags every planning command takes, in help order, with their defaults.
PLAN_OPTIONS: list[tuple[str, Any, Any]] = [
    ("nodes", NodesOpt, None),
    ("nodes_file", NodesFileOpt, None),
    ("zones", ZonesOpt, 0),
    ("racks", RacksOpt, None),
    ("unhealthy", UnhealthyOpt, 0.0),
    ("topology", TopologyOpt, "auto"),
    ("rrs", RrsOpt, None),
    ("redundancy", RedundancyOpt, 3),
    ("ratio", RatioOpt, 0.005),
    ("min_rrs", MinOpt, 3),
    ("max_rrs", MaxOpt, 25),
    ("steps", StepsOpt, None),
    ("per_zone_sizing", PerZoneOpt, False),
    ("session_budget", BudgetOpt, 500),
    ("spines", SpinesOpt, 3),
    ("zone_label", ZoneLabelOpt, ZONE_LABEL),
    ("rack_label", RackLabelOpt, RACK_LABEL),
    ("preferred_label", PreferredOpt, None),
    ("dedicated_label", DedicatedOpt, None),
    ("incompatible_label", IncompatibleOpt, None),
    ("cluster_id_base", ClusterIdOpt, "244.0.0.0"),
    ("api_group", ApiGroupOpt, "v1"),
    ("max_restart_time", RestartOpt, None),
]


def with_plan_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command the shared planning flags.

    The command receives them gathered in one ``plan_args`` dict (for
    :func:`load_inputs`) after its own keyword arguments; typer sees one flat
    signature, so ``--help`` lists every flag.
    """
    own = [p for p in inspect.signature(fn).parameters.values() if p.name != "plan_args"]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
        for name, ann, default in PLAN_OPTIONS
    ]
    names = {name for name, _, _ in PLAN_OPTIONS}

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> None:
        plan_args = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        fn(plan_args=plan_args, **kwargs)

    # Annotations are strings under `from __future__ import annotations`: resolve
    # them, or typer would not see the Annotated option metadata.
    hints = typing.get_type_hints(fn, include_extras=True)
    keyword_own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name]) for p in own
    ]
    wrapper.__signature__ = inspect.Signature(shared + keyword_own)  # type: ignore[attr-defined]
    return wrapper


# -- plan -----------------------------------------------------------------------


@app.command()
@with_plan_options
def plan(
    plan_args: dict[str, Any],
    as_json: JsonOpt = False,
    verify: Annotated[
        bool, typer.Option(help="Verify the rendered result (reachability, RR failures).")
    ] = True,
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot",
            metavar="FILE",
            help="Also draw the topologies compared across cluster sizes (.png or .svg).",
        ),
    ] = None,
    plot_sizes: PlotSizesOpt = None,
    force: ForceOpt = False,
) -> None:
    """Size and place route reflectors; print the numbers (the talk's table).

    Exit code 0: the plan is safe to apply; 1: the safety gate refuses it (which
    nodes would be cut off, and why, on stderr); 2: bad input."""
    from calico_rr.core.bgp.verify import verify as run_verify
    from calico_rr.core.operator.safety import gate_plan
    from calico_rr.core.planning.planner import plan as make_plan
    from calico_rr.core.report.summary import plan_graph, summarize

    # A bad --plot path fails before anything is computed or written.
    plot_fmt = _guard(lambda: _plot_format(plot)) if plot is not None else None
    gaps: list[str] = []
    verdicts: list[Verdict] = []

    def run() -> dict[str, Any]:
        inputs = load_inputs(**plan_args)
        made = make_plan(inputs.nodes, inputs.config)
        graph = plan_graph(made)
        verdicts.append(gate_plan(made, graph=graph))
        verification = run_verify(graph).to_dict() if verify else None
        summary = summarize(made, notes=inputs.notes, graph=graph, verification=verification)
        summary["safety"] = verdicts[0].to_dict()
        if plot is not None and plot_fmt is not None:
            from calico_rr.adapters.files import write_atomic
            from calico_rr.adapters.plots import comparison_figure

            comparison = _comparison(inputs, summary["nodes"], plot_sizes)
            write_atomic(plot, comparison_figure(comparison, plot_fmt), field="--plot")
            gaps.extend(comparison.gap_notes())
        return summary

    summary = _guard(run)
    if plot is not None:
        typer.echo(f"calico-rr: wrote the topology comparison to {plot}", err=True)
        for gap in gaps:
            typer.echo(f"calico-rr: plot gap: {gap}", err=True)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    _pass_gate(verdicts[0], force=force, what="this plan")


def _stat(s: dict[str, Any]) -> str:
    if s["min"] == s["max"]:
        return str(s["min"])
    return f"{s['min']}-{s['max']} (mean {s['mean']})"


def _print_summary(summary: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"calico-rr plan: {summary['topology']}", show_header=True)
    table.add_column("Numbers")
    table.add_column("", justify="right")
    for name, value in summary_rows(summary):
        table.add_row(name, value)
    console.print(table)
    if summary.get("auto_reason"):
        console.print(f"auto: {summary['auto_reason']}")
    for line in summary.get("shape_notes", []):
        console.print(line)
    for w in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of the `plan` table (also the HTML report's plan table)."""
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
    safety = summary.get("safety")
    if isinstance(safety, dict):
        rows.append(("Safe to apply (gate)", _yes(safety["ok"])))
    verification = summary.get("verification")
    if isinstance(verification, dict) and not summary["nodes"]:
        rows.append(("Every node reaches every node", "no BGP node"))
    elif isinstance(verification, dict):
        rows.append(("Every node reaches every node", _yes(verification["reachable"])))
        rows.append(
            ("Survives any single RR failure", _yes(verification["single_rr_failure_tolerant"]))
        )
        rows.append(("Longest CLUSTER_LIST", str(verification["max_cluster_list"])))
    return rows


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


# -- render ---------------------------------------------------------------------


@app.command()
@with_plan_options
def render(
    plan_args: dict[str, Any],
    include_nodes: Annotated[
        bool,
        typer.Option(
            "--include-nodes",
            help="Write every input node whole (its labels plus the plan's), not just changes.",
        ),
    ] = False,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Write here (atomically) instead of stdout."),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Write the Calico resources as a YAML stream for `kubectl apply --server-side`.

    Nothing is written unless the safety gate passes: every node with a BGP address
    keeps a route to every other (exit 1 and the cut-off nodes on stderr otherwise)."""
    from calico_rr.core.operator.safety import gate_plan
    from calico_rr.core.planning.planner import plan as make_plan

    def run() -> tuple[list[dict[str, Any]], Verdict, tuple[str, ...]]:
        inputs = load_inputs(**plan_args)
        made = make_plan(inputs.nodes, inputs.config)
        return made.resources(include_nodes=include_nodes), gate_plan(made), made.warnings

    docs, verdict, warnings = _guard(run)
    for warning in warnings:
        typer.echo(f"calico-rr: warning: {warning}", err=True)
    _pass_gate(verdict, force=force, what="this configuration")
    # Everything is computed before anything is written: bad input writes nothing.
    text = yaml.dump_all(docs, Dumper=_dumper(), sort_keys=False, default_flow_style=False)
    if output is None:
        sys.stdout.write(text)
    else:
        from calico_rr.adapters.files import write_atomic

        _guard(lambda: write_atomic(output, text.encode("utf-8"), field="--output"))


def _pass_gate(verdict: Verdict, *, force: bool, what: str) -> None:
    """Return when ``verdict`` allows applying (or ``force`` overrides it, said on
    stderr); else explain the refusal on stderr and exit 1."""
    if verdict.ok:
        return
    lines = verdict.explain().splitlines()
    if force:
        typer.echo(
            f"calico-rr: warning: --force: {what} is written although the safety gate "
            "refuses it; applying it cuts nodes off:",
            err=True,
        )
        for line in lines:
            typer.echo(f"calico-rr:   {line}", err=True)
        return
    typer.echo(f"calico-rr: refused: applying {what} would cut nodes off:", err=True)
    for line in lines:
        typer.echo(f"calico-rr:   {line}", err=True)
    typer.echo(
        "calico-rr: nothing to apply was written; fix the input, or pass --force to "
        "write it anyway",
        err=True,
    )
    raise typer.Exit(1)


def _dumper() -> type[yaml.SafeDumper]:
    return getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# -- verify ---------------------------------------------------------------------


@app.command()
@with_plan_options
def verify(
    plan_args: dict[str, Any],
    resources: Annotated[
        str | None,
        typer.Option(
            "--resources",
            help="Calico resources to verify (YAML/JSON stream or List: Nodes, Calico Nodes, "
            "BGPPeers, BGPConfigurations), as `kubectl get nodes,bgppeers,"
            "bgpconfigurations -o yaml` prints them.  Without it: a synthetic plan.",
        ),
    ] = None,
    fail_rrs: Annotated[
        int, typer.Option("--fail-rrs", help="Also check every combination of k failed RRs.")
    ] = 1,
    fail_zone: Annotated[
        list[str] | None,
        typer.Option("--fail-zone", help="Check the loss of this zone ('all': each). Repeatable."),
    ] = None,
    engine: Annotated[str, typer.Option(help="auto | exact | fast.")] = "auto",
    examples: Annotated[int, typer.Option(help="Missing pairs to list.")] = 10,
    calico_version: Annotated[
        str | None,
        typer.Option(
            "--calico-version",
            help="Read --resources as this Calico release does (e.g. v3.28.5); default: "
            "the newest.  Older releases ignore reversePeering (docs/CALICO.md).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Prove every node reaches every other node, loop-free, surviving RR failures.

    Exit code 0: reachable and tolerant of the failures checked; 1: not; 2: bad input.
    """
    from calico_rr.core.bgp.verify import verify as run_verify

    def run() -> tuple[dict[str, Any], list[str], bool]:
        graph, notes = _graph_for_verify(plan_args, resources, calico_version)
        zone_label = plan_args["zone_label"]
        zones = _zone_members(graph, zone_label, fail_zone or [])
        if engine not in ("auto", "exact", "fast"):
            raise InputError(f"unknown engine {engine!r}; choose auto, exact or fast")
        if fail_rrs < 1:
            raise InputError("--fail-rrs must be >= 1")
        report = run_verify(
            graph,
            fail_rrs=fail_rrs,
            fail_zones=zones or None,
            engine=engine,  # type: ignore[arg-type]
            examples=examples,
        )
        data = report.to_dict()
        ok = _verified(data)
        data["notes"] = notes
        return data, [*report.to_text(), *(f"note: {n}" for n in notes)], ok

    data, text, ok = _guard(run)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        for line in text:
            typer.echo(line)
    raise typer.Exit(0 if ok else 1)


def _graph_for_verify(
    plan_args: dict[str, Any], resources: str | None, calico_version: str | None = None
) -> tuple[Any, list[str]]:
    from calico_rr.core.bgp.calico_version import parse_calico_version
    from calico_rr.core.bgp.sessions import build_session_graph

    calico = parse_calico_version(calico_version) if calico_version is not None else None

    if resources is None:
        from calico_rr.core.planning.planner import plan as make_plan
        from calico_rr.core.report.summary import plan_graph

        inputs = load_inputs(**plan_args)
        notes = list(inputs.notes)
        if calico is not None:
            # the planner writes no field whose reading depends on the release
            notes.append(f"--calico-version {calico} applies to --resources only: ignored")
        return plan_graph(make_plan(inputs.nodes, inputs.config)), notes
    if plan_args["nodes"] is not None or plan_args["nodes_file"] is not None:
        raise InputError("give either --resources or a cluster to plan (--nodes/--nodes-file)")
    from calico_rr.adapters.nodes_io import read_documents
    from calico_rr.core.bgp.resources import parse_resources

    where = "standard input" if resources == "-" else resources  # as nodes_io names it
    parsed = parse_resources(read_documents(resources), where=where, calico=calico)
    return build_session_graph(parsed.state), list(parsed.notes)


def _zone_members(graph: Any, zone_label: str, wanted: list[str]) -> dict[str, list[int]]:
    """Zone name -> node indices, for the zones asked for ('all' = every zone)."""
    if not wanted:
        return {}
    members: dict[str, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        z = node.labels.get(zone_label)
        if z is not None:
            members.setdefault(z, []).append(i)
    if "all" in wanted:
        return dict(sorted(members.items()))
    unknown = [z for z in wanted if z not in members]
    if unknown:
        raise InputError(
            f"no node carries {zone_label}={unknown[0]} "
            f"(zones present: {', '.join(sorted(members)) or 'none'})",
            field="--fail-zone",
        )
    return {z: members[z] for z in wanted}


def _verified(data: dict[str, Any]) -> bool:
    """A verifier report (``to_dict``) says: there are BGP nodes, they reach each other,
    and every failure checked is tolerated.  No node proves nothing (issue 14)."""
    ok = bool(data["nodes"] and data["reachable"] and data["single_rr_failure_tolerant"])
    k = data.get("k_rr_failure")
    if isinstance(k, dict):
        ok = ok and bool(k["tolerant"])
    for zone_result in (data.get("zone_failure") or {}).values():
        ok = ok and bool(zone_result["tolerant"])
    return ok


# -- plots and the HTML report (docs/REPORT.md) -------------------------------------


def _plot_format(path: str) -> str:
    from calico_rr.adapters.plots import plot_format

    return plot_format(path)


def _comparison(inputs: Inputs, own_size: int, sizes_text: str | None) -> Any:
    """The topologies compared on synthetic clusters shaped like the planned one."""
    from calico_rr.core.report.series import (
        DEFAULT_SIZES,
        ClusterShape,
        compare,
        parse_sizes,
        sizes_with,
    )

    sizes = parse_sizes(sizes_text) if sizes_text else sizes_with(DEFAULT_SIZES, own_size)
    shape = ClusterShape.of(inputs.nodes, inputs.config)
    return compare(inputs.config, sizes=sizes, shape=shape, marked=own_size)


def _options_text(plan_args: dict[str, Any]) -> str:
    """The planning flags that differ from their defaults, as they would be typed."""
    parts: list[str] = []
    for name, _, default in PLAN_OPTIONS:
        value = plan_args.get(name, default)
        if value == default:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag)
        elif isinstance(value, list):
            parts.extend(f"{flag} {item}" for item in value)
        else:
            parts.append(f"{flag} {value}")
    return "calico-rr report " + " ".join(parts)


@app.command()
@with_plan_options
def report(
    plan_args: dict[str, Any],
    output: Annotated[str, typer.Argument(metavar="FILE.html", help="The HTML page to write.")],
    plot_sizes: PlotSizesOpt = None,
    fail_rrs: Annotated[
        int, typer.Option("--fail-rrs", help="Also check every combination of k failed RRs.")
    ] = 1,
) -> None:
    """Write one self-contained HTML page: the plan table, the verification (every RR
    and every zone failing), the topologies compared across sizes, and a drawing."""
    from calico_rr.adapters.files import write_atomic
    from calico_rr.adapters.plots import check_writable, comparison_figure, diagram_figure
    from calico_rr.adapters.report_html import ReportPage, render_html
    from calico_rr.core.bgp.verify import verify as run_verify
    from calico_rr.core.planning.planner import plan as make_plan
    from calico_rr.core.report.diagram import group_diagram
    from calico_rr.core.report.summary import plan_graph, summarize

    def run() -> str:
        if not output.lower().endswith((".html", ".htm")):
            raise InputError(f"{output}: the report is HTML; name it *.html", field="FILE")
        check_writable(output, "FILE")
        if fail_rrs < 1:
            raise InputError("--fail-rrs must be >= 1")
        inputs = load_inputs(**plan_args)
        config = inputs.config
        made = make_plan(inputs.nodes, config)
        graph = plan_graph(made)
        zones = _zone_members(graph, config.zone_label or "", ["all"])
        checked = run_verify(graph, fail_rrs=fail_rrs, fail_zones=zones if len(zones) > 1 else None)
        data = checked.to_dict()
        summary = summarize(made, notes=inputs.notes, graph=graph, verification=data)
        comparison = _comparison(inputs, summary["nodes"], plot_sizes)
        diagram = group_diagram(
            graph,
            topology=made.topology,
            zone_label=config.zone_label,
            rack_label=config.rack_label,
        )
        notes = [f"auto: {summary['auto_reason']}"] if summary.get("auto_reason") else []
        notes += [str(n) for n in summary.get("shape_notes", [])]
        notes += [f"note: {n}" for n in inputs.notes]
        page = ReportPage(
            title=f"calico-rr report: {made.topology}, {summary['nodes']} nodes",
            options=_options_text(plan_args),
            table=summary_rows(summary),
            notes=notes,
            warnings=[str(w) for w in summary.get("warnings", [])],
            verification=checked.to_text(),
            verified=_verified(data),
            comparison=comparison,
            comparison_png=comparison_figure(comparison, "png"),
            diagram_png=diagram_figure(diagram, "png"),
            diagram_summary=diagram.summary(),
        )
        write_atomic(output, render_html(page).encode("utf-8"), field="FILE")
        return page.title

    title = _guard(run)
    typer.echo(f"wrote {output} ({title})")


# -- the operator ------------------------------------------------------------------

KubeconfigOpt = Annotated[
    str | None,
    typer.Option(help="kubeconfig file (default: $KUBECONFIG, in-cluster, then ~/.kube/config)."),
]


DatastoreOpt = Annotated[
    str | None,
    typer.Option(help="Calico's datastore: kubernetes | etcdv3 (default: $DATASTORE_TYPE)."),
]
EtcdEndpointsOpt = Annotated[
    str | None, typer.Option(help="etcdv3: comma-separated URLs (default: $ETCD_ENDPOINTS).")
]
EtcdCaOpt = Annotated[
    str | None, typer.Option(help="etcdv3: CA file (default: $ETCD_CA_CERT_FILE).")
]
EtcdCertOpt = Annotated[
    str | None, typer.Option(help="etcdv3: client certificate (default: $ETCD_CERT_FILE).")
]
EtcdKeyOpt = Annotated[
    str | None, typer.Option(help="etcdv3: client key (default: $ETCD_KEY_FILE).")
]
EtcdUserOpt = Annotated[
    str | None,
    typer.Option(
        help="etcdv3: etcd user (default: $ETCD_USERNAME); the password is read from "
        "$ETCD_PASSWORD only."
    ),
]


def _etcd_client(
    endpoints: str | None,
    ca_cert_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    username: str | None,
) -> EtcdClient:
    """A client for Calico's etcd from the --etcd-* flags over the ETCD_* variables."""
    from calico_rr.adapters.etcd.client import EtcdClient
    from calico_rr.adapters.etcd.config import etcd_settings

    settings = etcd_settings(
        endpoints=endpoints,
        ca_cert_file=ca_cert_file,
        cert_file=cert_file,
        key_file=key_file,
        username=username,
    )
    return EtcdClient.from_settings(settings)


@app.command()
def run(
    kubeconfig: KubeconfigOpt = None,
    namespace: Annotated[str, typer.Option(help="Namespace of the leader-election Lease.")] = (
        "calico-rr"
    ),
    identity: Annotated[
        str | None, typer.Option(help="This replica's name in the Lease (default: host-pid).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port of /healthz, /readyz and /metrics.")] = 8080,
    lease_duration: Annotated[float, typer.Option(help="Lease duration in seconds.")] = 15.0,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error.")] = "info",
    datastore_type: DatastoreOpt = None,
    etcd_endpoints: EtcdEndpointsOpt = None,
    etcd_ca_cert_file: EtcdCaOpt = None,
    etcd_cert_file: EtcdCertOpt = None,
    etcd_key_file: EtcdKeyOpt = None,
    etcd_username: EtcdUserOpt = None,
    node_health: Annotated[
        str | None,
        typer.Option(
            help="etcdv3: where node health comes from: felix (Felix liveness reports in "
            "etcd) | kubernetes (Kubernetes Nodes: Ready, cordon, taints; uses "
            "--kubeconfig or the in-cluster account). Default: $CALICO_RR_NODE_HEALTH or felix."
        ),
    ] = None,
) -> None:
    """Run the operator: watch the cluster, keep route reflectors and BGP config right.

    With DATASTORE_TYPE=etcdv3 (or --datastore-type etcdv3) it runs on Calico's etcd;
    its config is /calico-rr/config/default there (docs/ETCD.md)."""
    import signal
    import threading

    from calico_rr.adapters.etcd.config import datastore_type as pick_datastore
    from calico_rr.adapters.etcd.operator import EtcdOperator
    from calico_rr.adapters.kube.client import KubeClient
    from calico_rr.adapters.kube.operator import Operator
    from calico_rr.adapters.observe import Health, OperatorMetrics, serve, setup_logging

    setup_logging(log_level)
    metrics = OperatorMetrics()
    health = Health()

    def start() -> Operator | EtcdOperator:
        if pick_datastore(flag=datastore_type) == "etcdv3":
            source = (node_health or os.environ.get("CALICO_RR_NODE_HEALTH") or "felix").lower()
            if source not in ("felix", "kubernetes"):
                raise InputError(
                    f"node health source must be felix or kubernetes, got {source!r}",
                    field="--node-health / CALICO_RR_NODE_HEALTH",
                )
            etcd = _etcd_client(
                etcd_endpoints, etcd_ca_cert_file, etcd_cert_file, etcd_key_file, etcd_username
            )
            kube_health = None
            if source == "kubernetes":
                from calico_rr.adapters.etcd.kube_health import KubeNodeHealth

                kube_health = KubeNodeHealth(
                    KubeClient.load(kubeconfig, on_request=metrics.on_request)
                )
            return EtcdOperator(
                etcd,
                identity=identity,
                metrics=metrics,
                health=health,
                lease_duration=lease_duration,
                kube_health=kube_health,
            )
        client = KubeClient.load(kubeconfig, on_request=metrics.on_request)
        return Operator(
            client,
            namespace=namespace,
            identity=identity,
            metrics=metrics,
            health=health,
            lease_duration=lease_duration,
        )

    op = _guard(start)
    server = serve(port, metrics, health)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    op.start()
    stop.wait()
    op.stop()
    server.shutdown()


@app.command()
def uninstall(
    kubeconfig: KubeconfigOpt = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600.0,
    datastore_type: DatastoreOpt = None,
    etcd_endpoints: EtcdEndpointsOpt = None,
    etcd_ca_cert_file: EtcdCaOpt = None,
    etcd_cert_file: EtcdCertOpt = None,
    etcd_key_file: EtcdKeyOpt = None,
    etcd_username: EtcdUserOpt = None,
) -> None:
    """Put the cluster back on the node-to-node mesh and remove everything calico-rr made.

    Deletes the RouteReflectorConfig; its finalizer keeps it until the mesh is back
    on and confirmed, our peerings, labels and annotations are gone.  On etcd
    (DATASTORE_TYPE=etcdv3) the config key is marked deleted and kept until then."""
    from calico_rr.adapters.etcd.config import datastore_type as pick_datastore
    from calico_rr.adapters.observe import setup_logging

    setup_logging("info", json_format=False)

    def run_it() -> str:
        if pick_datastore(flag=datastore_type) == "etcdv3":
            from calico_rr.adapters.etcd.operator import uninstall as etcd_uninstall

            etcd = _etcd_client(
                etcd_endpoints, etcd_ca_cert_file, etcd_cert_file, etcd_key_file, etcd_username
            )
            with etcd:
                return etcd_uninstall(etcd, timeout=timeout)
        from calico_rr.adapters.kube.client import KubeClient
        from calico_rr.adapters.kube.operator import uninstall as run_uninstall

        return run_uninstall(KubeClient.load(kubeconfig), timeout=timeout)

    typer.echo(_guard(run_it))


# -- doctor -------------------------------------------------------------------------


@app.command()
def doctor(
    kubeconfig: KubeconfigOpt = None,
    resources: Annotated[
        str | None,
        typer.Option(
            "--resources",
            help="Check a dump instead of a live cluster ('-' = stdin): `kubectl get nodes,"
            "ippools,bgpconfigurations,bgppeers,felixconfigurations,clusterinformations,"
            "deployments -A -o yaml`.",
        ),
    ] = None,
    session_budget: Annotated[
        int, typer.Option("--session-budget", help="Sessions one RR may hold (rr-overloaded).")
    ] = 500,
    as_json: JsonOpt = False,
    datastore_type: DatastoreOpt = None,
    etcd_endpoints: EtcdEndpointsOpt = None,
    etcd_ca_cert_file: EtcdCaOpt = None,
    etcd_cert_file: EtcdCertOpt = None,
    etcd_key_file: EtcdKeyOpt = None,
    etcd_username: EtcdUserOpt = None,
) -> None:
    """Check a Calico cluster against the scale advice (mesh, RRs, encapsulation, Typha).

    Reads a dump (--resources), the Kubernetes API, or Calico's etcd
    (DATASTORE_TYPE=etcdv3 / --datastore-type etcdv3, ETCD_* variables).
    Exit code 0: no error-severity finding; 1: at least one; 2: bad input.  See
    docs/DOCTOR.md for every check."""
    from calico_rr.adapters.etcd.config import datastore_type as pick_datastore
    from calico_rr.core.doctor.checks import diagnose

    def check() -> tuple[list[Any], Any]:
        if resources is not None and kubeconfig is not None:
            raise InputError("give either --resources FILE or --kubeconfig PATH, not both")
        if session_budget < 1:
            raise InputError(f"must be >= 1, got {session_budget}", field="--session-budget")
        if resources is None and pick_datastore(flag=datastore_type) == "etcdv3":
            if kubeconfig is not None:
                raise InputError("give either --kubeconfig or the etcd datastore, not both")
            from calico_rr.adapters.etcd.inventory import load_etcd

            etcd = _etcd_client(
                etcd_endpoints, etcd_ca_cert_file, etcd_cert_file, etcd_key_file, etcd_username
            )
            with etcd:
                inventory = load_etcd(etcd)
        elif resources is not None:
            from calico_rr.adapters.kube.inventory import load_dump

            inventory = load_dump(resources)
        else:
            from calico_rr.adapters.kube.client import KubeClient
            from calico_rr.adapters.kube.inventory import load_live

            with KubeClient.load(kubeconfig) as client:
                inventory = load_live(client)
        return diagnose(inventory, session_budget=session_budget), inventory

    findings, inventory = _guard(check)
    if as_json:
        typer.echo(json.dumps({"findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        _print_findings(findings, inventory)
    raise typer.Exit(1 if any(f.severity == "error" for f in findings) else 0)


def _print_findings(findings: list[Any], inventory: Any) -> None:
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
        table.add_column("Check / object", overflow="fold", ratio=1)
        table.add_column("Finding / fix", overflow="fold", ratio=3)
        colour = {"error": "red", "warning": "yellow", "info": "cyan"}
        for f in findings:
            sev = f.severity.value
            check = Text(f.id, style="bold")
            check.append("\n" + f.object, style="dim")
            finding = Text(f.message)
            finding.append("\nfix: " + f.fix, style="green")
            table.add_row(Text(sev, style=colour[sev]), check, finding)
        console.print(table)
    counts = summary_counts(findings)
    total = ", ".join(
        f"{n} {sev}{'s' if n != 1 and sev != 'info' else ''}" for sev, n in counts.items()
    )
    console.print(total if findings else "no findings", highlight=False)
    for note in inventory.notes:
        console.print(f"note: {note}", style="dim", markup=False, highlight=False)


@app.command()
def demo(
    nodes: Annotated[int, typer.Option(help="Synthetic nodes to create.")] = 1000,
    zones: Annotated[int, typer.Option(help="Zones to spread them over.")] = 3,
    topology: Annotated[str, typer.Option(help="auto | single | multi | quorum | hierarchy.")] = (
        "auto"
    ),
    datastore: Annotated[
        str,
        typer.Option(
            help="kubernetes (a local kube-apiserver + etcd) | etcdv3 (Calico's etcd "
            "datastore: a local etcd with TLS)."
        ),
    ] = "kubernetes",
    as_json: JsonOpt = False,
) -> None:
    """Start a local kube-apiserver + etcd (or, with --datastore etcdv3, a local etcd
    as Calico's datastore), run the operator on N synthetic nodes, verify the
    result, fail a zone and show it re-converge."""
    if datastore == "kubernetes":
        from calico_rr.adapters.kube.demo import run_demo
    elif datastore == "etcdv3":
        from calico_rr.adapters.etcd.demo import run_demo
    else:
        typer.echo(f"--datastore {datastore!r}: must be 'kubernetes' or 'etcdv3'", err=True)
        raise typer.Exit(2)

    def progress(line: str) -> None:
        if not as_json:
            typer.echo(line)

    result = _guard(
        lambda: run_demo(nodes=nodes, zones=zones, topology=topology, progress=progress)
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        table = Table(title="calico-rr demo", show_header=False)
        for key, value in result.items():
            if key == "join_writes":
                continue
            text = (
                ", ".join(f"{k}={v}" for k, v in value.items())
                if isinstance(value, dict)
                else str(value)
            )
            table.add_row(key, text)
        Console().print(table)
    if not (result.get("converged") and result.get("verified")):
        raise typer.Exit(1)


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


def main() -> None:
    """The console script.  Like ``app()``, except that a usage error (an unknown
    flag, a value of the wrong type) is one line on stderr, exit code 2, instead of
    click's framed box: scripts and people both read one line (issue 14)."""
    args = sys.argv[1:]
    if not args:
        app()  # no_args_is_help: the help text, as typer prints it
        return
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="calico-rr", standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:  # click's UsageError, BadParameter, NoSuchOption
        ctx = getattr(exc, "ctx", None)
        path = ctx.command_path if ctx is not None else "calico-rr"
        text = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
        sys.stderr.write(f"calico-rr: error: {text} (see '{path} --help')\n")
        sys.exit(int(getattr(exc, "exit_code", EXIT_BAD_INPUT)))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
