"""``calico-rr plan``, ``render``, ``verify`` and ``report``: the planner, the safety gate
and the verifier from the command line."""

from __future__ import annotations

import json
import sys
import typing
from collections.abc import Callable
from dataclasses import fields
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from calico_rr.errors import InputError

if typing.TYPE_CHECKING:
    from calico_rr.core.operator.safety import Verdict

from calico_rr.cli.base import (
    ContextOpt,
    FailRrsOpt,
    ForceOpt,
    Inputs,
    JsonOpt,
    KubeconfigOpt,
    OutputFormat,
    OutputOpt,
    PlanArgs,
    PlotSizesOpt,
    _guard,
    app,
    check_html,
    echo_data,
    emit,
    is_data,
    load_inputs,
    output_format,
    synthetic_only,
    with_plan_options,
)
from calico_rr.cli.live import is_live, live_resources, plan_inputs

# -- plan -----------------------------------------------------------------------


@app.command()
@with_plan_options
def plan(
    plan_args: PlanArgs,
    output: OutputOpt = OutputFormat.table,
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
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Size and place route reflectors; print the numbers (the talk's table).

    The nodes: synthetic (--nodes), a NodeList file (--nodes-file) or a live
    cluster's (--kubeconfig/--context).

    Exit code 0: the plan is safe to apply; 1: the safety gate refuses it (which
    nodes would be cut off, and why, on stderr); 2: bad input."""
    from calico_rr.adapters.plots import comparison_figure, plot_format
    from calico_rr.core.bgp.verify.families import verify_graphs
    from calico_rr.core.operator.safety import gate_plan
    from calico_rr.core.planning.planner import plan as make_plan
    from calico_rr.core.report.summary import plan_graphs, summarize

    # A bad --plot path fails before anything is computed or written.
    plot_fmt = _guard(lambda: plot_format(plot)) if plot is not None else None

    def run() -> tuple[dict[str, Any], Verdict, list[str]]:
        inputs = plan_inputs(plan_args, kubeconfig, context)
        made = make_plan(inputs.nodes, inputs.config)
        graphs = plan_graphs(made)
        graph = next(iter(graphs.values()))  # IPv4's, or IPv6's in an IPv6-only cluster
        # gate_plan's own checks, then every family's reachability on these graphs
        verdict = gate_plan(made, graphs=graphs)
        verification = verify_graphs(graphs).to_dict() if verify else None
        summary = summarize(
            made, notes=inputs.notes, graph=graph, verification=verification, graphs=graphs
        )
        summary["safety"] = verdict.to_dict()
        if plot is None or plot_fmt is None:
            return summary, verdict, []
        from calico_rr.adapters.files import write_atomic

        comparison = _comparison(inputs, summary["nodes"], plot_sizes)
        write_atomic(plot, comparison_figure(comparison, plot_fmt), field="--plot")
        return summary, verdict, comparison.gap_notes()

    summary, verdict, gaps = _guard(run)
    if plot is not None:
        typer.echo(f"calico-rr: wrote the topology comparison to {plot}", err=True)
        for gap in gaps:
            typer.echo(f"calico-rr: plot gap: {gap}", err=True)
    fmt = output_format(output, as_json)
    if is_data(fmt):
        echo_data(summary, fmt)
    else:
        _print_summary(summary, wide=fmt == OutputFormat.wide)
    _pass_gate(verdict, force=force, what="this plan")


def _stat(s: dict[str, Any]) -> str:
    if s["min"] == s["max"]:
        return str(s["min"])
    return f"{s['min']}-{s['max']} (mean {s['mean']})"


#: What ``plan -o wide`` adds to the table: (row name, summary key).
WIDE_ROWS = (
    ("Eligible nodes", "eligible_nodes"),
    ("Ineligible nodes", "ineligible_nodes"),
    ("Nodes without a BGP address", "nodes_without_ip"),
    ("Clients without an RR", "clients_without_rr"),
    ("Node changes to write", "node_changes"),
)


def _print_summary(summary: dict[str, Any], *, wide: bool = False) -> None:
    console = Console()
    table = Table(title=f"calico-rr plan: {summary['topology']}", show_header=True)
    table.add_column("Numbers")
    table.add_column("", justify="right")
    for name, value in summary_rows(summary):
        table.add_row(name, value)
    if wide:
        for name, key in WIDE_ROWS:
            if key in summary:
                table.add_row(name, str(summary[key]))
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
    add_path = summary.get("add_path")
    if isinstance(add_path, dict):
        more = "≥ " if add_path["at_least"] else ""
        rows.append(
            (
                "Add-path routes / node (max)",
                f"{more}{add_path['routes_per_node']:,} ({more}{add_path['paths_per_prefix']:,}"
                " per prefix)",
            )
        )
    rows.extend(_family_rows(summary.get("families")))
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


def _family_rows(families: object) -> list[tuple[str, str]]:
    """Sessions per family, when the cluster runs more than IPv4 (an IPv4-only
    table stays as it was)."""
    if not isinstance(families, dict) or list(families) in ([], ["ipv4"]):
        return []
    rows = []
    for family, f in families.items():
        name = "IPv6" if family == "ipv6" else "IPv4"
        rows.append((f"{name}: BGP nodes", str(f["nodes"])))
        rows.append((f"{name}: connections / RR", _stat(f["sessions_per_rr"])))
        rows.append((f"{name}: total BGP sessions", str(f["total_sessions"])))
        if f["nodes_without_address"]:
            rows.append((f"{name}: nodes without address", str(len(f["nodes_without_address"]))))
    return rows


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


# -- render ---------------------------------------------------------------------


class RenderFormat(StrEnum):
    """``render -o``: how the resources are written (YAML for ``kubectl apply``)."""

    yaml = "yaml"
    json = "json"


@app.command()
@with_plan_options
def render(
    plan_args: PlanArgs,
    include_nodes: Annotated[
        bool,
        typer.Option(
            "--include-nodes",
            help="Write every input node whole (its labels plus the plan's), not just changes.",
        ),
    ] = False,
    output: Annotated[
        RenderFormat,
        typer.Option(
            "--output",
            "-o",
            help="yaml: a YAML stream (default); json: one JSON List of the same objects.",
        ),
    ] = RenderFormat.yaml,
    output_file: Annotated[
        str | None,
        typer.Option(
            "--output-file", metavar="FILE", help="Write here (atomically) instead of stdout."
        ),
    ] = None,
    force: ForceOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Write the Calico resources as a YAML stream (or a JSON List) for
    `kubectl apply --server-side`; the nodes as for `plan` (also a live cluster's).

    Nothing is written unless the safety gate passes: every node with a BGP address
    keeps a route to every other (exit 1 and the cut-off nodes on stderr otherwise)."""
    from calico_rr.core.operator.safety import gate_plan
    from calico_rr.core.planning.planner import plan as make_plan

    def run() -> tuple[list[dict[str, Any]], Verdict, tuple[str, ...]]:
        inputs = plan_inputs(plan_args, kubeconfig, context)
        made = make_plan(inputs.nodes, inputs.config)
        return made.resources(include_nodes=include_nodes), gate_plan(made), made.warnings

    docs, verdict, warnings = _guard(run)
    for warning in warnings:
        typer.echo(f"calico-rr: warning: {warning}", err=True)
    _pass_gate(verdict, force=force, what="this configuration")
    # Everything is computed before anything is written: bad input writes nothing.
    if output == RenderFormat.json:
        # a List, as `kubectl get -o json` prints several objects: kubectl applies it
        text = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}, indent=2) + "\n"
    else:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        text = yaml.dump_all(docs, Dumper=dumper, sort_keys=False, default_flow_style=False)
    if output_file is None:
        sys.stdout.write(text)
    else:
        from calico_rr.adapters.files import write_atomic

        _guard(lambda: write_atomic(output_file, text.encode("utf-8"), field="--output-file"))


def _pass_gate(verdict: Verdict, *, force: bool, what: str) -> None:
    """Return when ``verdict`` allows applying (or ``force`` overrides it, said on
    stderr); else explain the refusal on stderr and exit 1."""
    if verdict.ok:
        return
    if force:
        typer.echo(
            f"calico-rr: warning: --force: {what} is written although the safety gate "
            "refuses it; applying it cuts nodes off:",
            err=True,
        )
    else:
        typer.echo(f"calico-rr: refused: applying {what} would cut nodes off:", err=True)
    for line in verdict.explain().splitlines():
        typer.echo(f"calico-rr:   {line}", err=True)
    if not force:
        typer.echo(
            "calico-rr: nothing to apply was written; fix the input, or pass --force to "
            "write it anyway",
            err=True,
        )
        raise typer.Exit(1)


# -- verify ---------------------------------------------------------------------

RESOURCES_HELP = (
    "Calico resources to verify (YAML/JSON stream or List: Nodes, Calico Nodes, BGPPeers, "
    "BGPConfigurations), as `kubectl get nodes,bgppeers,bgpconfigurations -o yaml` prints "
    "them.  Without it: a synthetic plan."
)


@app.command()
@with_plan_options
def verify(
    plan_args: PlanArgs,
    resources: Annotated[str | None, typer.Option(help=RESOURCES_HELP)] = None,
    fail_rrs: FailRrsOpt = 1,
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
    output: OutputOpt = OutputFormat.table,
    as_json: JsonOpt = False,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Prove every node reaches every other node, loop-free, surviving RR failures.

    Checks --resources, a live cluster's Nodes, BGPPeers and BGPConfigurations
    (--kubeconfig/--context), or a plan (--nodes/--nodes-file).

    Exit code 0: reachable and tolerant of the failures checked; 1: not; 2: bad input.
    """
    from calico_rr.core.bgp.verify.families import verify_families
    from calico_rr.core.bgp.verify.fanout import reflected_fanout

    def run() -> tuple[dict[str, Any], list[str], bool]:
        live = is_live(kubeconfig, context)
        if live and resources is not None:
            raise InputError("give either --resources FILE or --kubeconfig/--context, not both")
        source = (lambda: live_resources(kubeconfig, context)) if live else resources
        state, notes = _state_for_verify(plan_args, source, calico_version)
        zones = _zone_members(state.nodes, plan_args.zone_label, fail_zone or [])
        if engine not in ("auto", "exact", "fast"):
            raise InputError(f"unknown engine {engine!r}; choose auto, exact or fast")
        if fail_rrs < 1:
            raise InputError("--fail-rrs must be >= 1")
        report = verify_families(
            state,
            fail_rrs=fail_rrs,
            fail_zones=zones or None,
            engine=engine,  # type: ignore[arg-type]
            examples=examples,
        )
        data = report.to_dict()
        ok = _verified(data)
        # how much BIRD holds: not part of the verdict, but of what the layout costs
        found = reflected_fanout(report.primary.graph)
        data["add_path"] = None if found is None else found.to_dict()
        data["notes"] = notes
        add_path = [] if found is None else [f"add-path: {found.describe()}"]
        return data, [*report.to_text(), *add_path, *(f"note: {n}" for n in notes)], ok

    data, text, ok = _guard(run)
    emit(data, output_format(output, as_json), text)
    raise typer.Exit(0 if ok else 1)


def _state_for_verify(
    plan_args: PlanArgs,
    resources: str | Callable[[], list[dict[str, Any]]] | None,
    calico_version: str | None = None,
) -> tuple[Any, list[str]]:
    """The Calico state to verify (every address family of it): a plan's, or the
    resources read from a file or (a callable) from a live cluster."""
    from calico_rr.core.bgp.calico_version import parse_calico_version

    calico = parse_calico_version(calico_version) if calico_version is not None else None

    if resources is None:
        from calico_rr.core.planning.planner import plan as make_plan
        from calico_rr.core.report.summary import plan_state

        inputs = load_inputs(plan_args)
        notes = list(inputs.notes)
        if calico is not None:
            # the planner writes no field whose reading depends on the release
            notes.append(f"--calico-version {calico} applies to --resources only: ignored")
        return plan_state(make_plan(inputs.nodes, inputs.config)), notes
    if plan_args.nodes is not None or plan_args.nodes_file is not None:
        raise InputError(
            "give either the resources (--resources, --kubeconfig/--context) or a cluster "
            "to plan (--nodes/--nodes-file)"
        )
    whose = "a live cluster's" if callable(resources) else "the resources'"
    synthetic_only(plan_args.ip_family, whose)
    from calico_rr.adapters.nodes_io import read_documents
    from calico_rr.core.bgp.resources import parse_resources

    if callable(resources):
        docs, where = resources(), "cluster"
    else:
        docs = read_documents(resources)
        where = "standard input" if resources == "-" else resources  # as nodes_io names it
    parsed = parse_resources(docs, where=where, calico=calico)
    return parsed.state, list(parsed.notes)


def _zone_members(nodes: Any, zone_label: str, wanted: list[str]) -> dict[str, list[str]]:
    """Zone name -> names of its BGP nodes (any family), for the zones asked for
    ('all' = every zone)."""
    if not wanted:
        return {}
    members: dict[str, list[str]] = {}
    for node in nodes:
        z = node.labels.get(zone_label)
        if z is not None and (node.ip is not None or node.ip6 is not None):
            members.setdefault(z, []).append(node.name)
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


def _options_text(plan_args: PlanArgs) -> str:
    """The planning flags that differ from their defaults, as they would be typed."""
    parts: list[str] = []
    for field in fields(plan_args):
        value = getattr(plan_args, field.name)
        if value == field.default:
            continue
        flag = "--" + field.name.replace("_", "-")
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
    plan_args: PlanArgs,
    output: Annotated[str, typer.Argument(metavar="FILE.html", help="The HTML page to write.")],
    plot_sizes: PlotSizesOpt = None,
    fail_rrs: FailRrsOpt = 1,
) -> None:
    """Write one self-contained HTML page: the plan table, the verification (every RR
    and every zone failing), the topologies compared across sizes, and a drawing."""
    from calico_rr.adapters.files import write_atomic
    from calico_rr.adapters.plots import comparison_figure, diagram_figure, require_matplotlib
    from calico_rr.adapters.report_html import ReportPage, render_html
    from calico_rr.core.bgp.verify.families import verify_graphs
    from calico_rr.core.planning.planner import plan as make_plan
    from calico_rr.core.report.diagram import group_diagram
    from calico_rr.core.report.summary import plan_graphs, plan_state, summarize

    def run() -> str:
        require_matplotlib()
        check_html(output, "FILE")
        if fail_rrs < 1:
            raise InputError("--fail-rrs must be >= 1")
        inputs = load_inputs(plan_args)
        config = inputs.config
        made = make_plan(inputs.nodes, config)
        graphs = plan_graphs(made)
        graph = next(iter(graphs.values()))  # the first family's: the drawing's
        zones = _zone_members(plan_state(made).nodes, config.zone_label or "", ["all"])
        checked = verify_graphs(
            graphs, fail_rrs=fail_rrs, fail_zones=zones if len(zones) > 1 else None
        )
        data = checked.to_dict()
        summary = summarize(made, notes=inputs.notes, graph=graph, verification=data, graphs=graphs)
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
