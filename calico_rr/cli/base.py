"""What every ``calico-rr`` command shares: the app, the error handling, the
planning and datastore flags (declared once, given to a command by a decorator)
and the reading of planning inputs."""

from __future__ import annotations

import functools
import inspect
import json
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Annotated, Any, TypeVar

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
from calico_rr.errors import CalicoRRError, ConfigError, InputError, one_line
from calico_rr.model import ZONE_LABEL, Node

if typing.TYPE_CHECKING:
    from calico_rr.adapters.etcd.client import EtcdClient
    from calico_rr.adapters.kube.client import KubeClient

app = typer.Typer(no_args_is_help=True)

#: Exit codes: 1 a runtime failure (a datastore unreachable or refusing, a timeout,
#: a check that fails), 2 bad input only (usage, InputError, ConfigError).
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
T = TypeVar("T")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"calico-rr {version('calico-rr')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("calico-rr unknown")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print calico-rr's version and exit.",
        ),
    ] = False,
) -> None:
    """Route reflectors for Calico BGP at scale: plan, render, verify, run the operator."""


class OutputFormat(StrEnum):
    """``-o``: what a command prints, as kubectl and calicoctl name it."""

    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        help="table (default), wide (the table with extra columns where there are), "
        "json or yaml (the same data).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", hidden=True, help="Same as -o json.")]


def output_format(output: OutputFormat, as_json: bool) -> OutputFormat:
    """``-o`` with the older ``--json`` folded in (``--json`` means ``-o json``)."""
    return OutputFormat.json if as_json else output


def is_data(fmt: OutputFormat) -> bool:
    """json and yaml print one document on stdout and nothing else there."""
    return fmt in (OutputFormat.json, OutputFormat.yaml)


def echo_data(data: Any, fmt: OutputFormat) -> None:
    """``data`` as JSON or YAML text on stdout (the same data either way)."""
    if fmt == OutputFormat.yaml:
        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), nl=False)
    else:
        typer.echo(json.dumps(data, indent=2) + "\n", nl=False)


def emit(data: Any, fmt: OutputFormat, lines: Iterable[str]) -> None:
    """``data`` as one JSON/YAML document, or else ``lines`` as text."""
    if is_data(fmt):
        echo_data(data, fmt)
        return
    for line in lines:
        typer.echo(line)


def progress_printer(fmt: OutputFormat) -> Callable[[str], None]:
    """Progress lines on stdout, none with -o json|yaml (stdout is then one document)."""
    return (lambda _line: None) if is_data(fmt) else typer.echo


def print_result(
    result: dict[str, Any],
    title: str,
    *,
    fmt: OutputFormat,
    skip: tuple[str, ...],
    cell: Callable[[Any], str] = str,
) -> None:
    """A command's result: one JSON/YAML document, or a two-column table of every key
    but those in ``skip`` (which the command shows its own way, or not at all)."""
    if is_data(fmt):
        echo_data(result, fmt)
        return
    table = Table(title=title, show_header=False)
    for key, value in result.items():
        if key not in skip:
            table.add_row(key, cell(value))
    Console().print(table)


def check_html(path: str, field: str) -> None:
    """An HTML page to write: named so, and writable (InputError: exit 2)."""
    from calico_rr.adapters.plots import check_writable

    if not path.lower().endswith((".html", ".htm")):
        raise InputError(f"{path}: the report is HTML; name it *.html", field=field)
    check_writable(path, field)


def _guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; one line on stderr instead of a traceback: exit 2 for bad input,
    exit 1 for a runtime failure (a datastore unreachable or refusing, a timeout)."""
    from calico_rr.adapters.kube.errors import ApiError

    try:
        return fn()
    except (InputError, ConfigError) as exc:
        message, code = str(exc), EXIT_BAD_INPUT
    except (CalicoRRError, ApiError, TimeoutError) as exc:  # etcd, the API server, a wait
        message, code = one_line(" ".join(str(exc).split())), EXIT_FAILURE
    typer.echo(f"calico-rr: error: {message}", err=True)
    raise typer.Exit(code)


# -- shared options -------------------------------------------------------------

TopologyOpt = Annotated[str, typer.Option(help="auto | single | multi | quorum | hierarchy.")]
FailRrsOpt = Annotated[
    int, typer.Option("--fail-rrs", help="Also check every combination of k failed RRs.")
]
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
class PlanArgs:
    """The flags every planning command takes, in help order, with their defaults
    (given to a command by :func:`with_plan_options`)."""

    nodes: Annotated[
        int | None, typer.Option("--nodes", help="Synthetic cluster: number of nodes.")
    ] = None
    nodes_file: Annotated[
        str | None,
        typer.Option("--nodes-file", help="Kubernetes NodeList (YAML or JSON, '-' = stdin)."),
    ] = None
    zones: Annotated[int, typer.Option(help="Synthetic cluster: number of zones.")] = 0
    racks: Annotated[
        int | None,
        typer.Option(
            help="Racks: synthetic rack labels, and generated racks for unlabelled nodes."
        ),
    ] = None
    unhealthy: Annotated[
        float, typer.Option(help="Synthetic cluster: share of unhealthy nodes, 0 to <1.")
    ] = 0.0
    topology: TopologyOpt = "auto"
    rrs: Annotated[int | None, typer.Option(help="Explicit RR count (overrides sizing).")] = None
    redundancy: Annotated[int, typer.Option(help="RRs per client (rack RRs per rack).")] = 3
    ratio: Annotated[float, typer.Option(help="Linear sizing: RRs per ready node.")] = 0.005
    min_rrs: Annotated[int, typer.Option("--min-rrs", help="Linear sizing: minimum RRs.")] = 3
    max_rrs: Annotated[int, typer.Option("--max-rrs", help="Linear sizing: maximum RRs.")] = 25
    steps: Annotated[
        str | None,
        typer.Option(help="Stepping sizing instead of linear, e.g. '200:3,1000:5,5000:25'."),
    ] = None
    per_zone_sizing: Annotated[
        bool, typer.Option("--per-zone-sizing", help="Size each zone on its own node count.")
    ] = False
    session_budget: Annotated[
        int, typer.Option("--session-budget", help="Per-RR session budget for auto/hierarchy.")
    ] = 500
    spines: Annotated[int, typer.Option(help="Spine RRs (hierarchy).")] = 3
    zone_label: Annotated[str, typer.Option(help="Zone label ('' = ignore zones).")] = ZONE_LABEL
    rack_label: Annotated[str, typer.Option(help="Rack label (hierarchy).")] = RACK_LABEL
    preferred_label: Annotated[
        str | None, typer.Option(help="Prefer nodes with this label as RRs (key or key=value).")
    ] = None
    dedicated_label: Annotated[
        str | None,
        typer.Option(help="Only nodes with this label may be RRs (key or key=value)."),
    ] = None
    incompatible_label: Annotated[
        list[str] | None,
        typer.Option(
            "--incompatible-label",
            help="Never an RR: key=value, key= (empty value) or key (present). Repeatable.",
        ),
    ] = None
    cluster_id_base: Annotated[
        str, typer.Option(help="Cluster IDs are allocated after this dotted quad.")
    ] = "244.0.0.0"
    api_group: Annotated[
        str,
        typer.Option(help="BGPPeer/BGPConfiguration API group: v1 (crd.projectcalico.org) or v3."),
    ] = "v1"
    max_restart_time: Annotated[
        str | None, typer.Option(help="BGPPeer maxRestartTime (graceful restart), e.g. 120s.")
    ] = None
    ip_family: Annotated[
        str,
        typer.Option(
            "--ip-family",
            help="Synthetic cluster: ipv4 | ipv6 | dual (both addresses on every node).",
        ),
    ] = "ipv4"


@dataclass(frozen=True)
class Inputs:
    nodes: list[Node]
    notes: list[str]
    config: PlanConfig


def _api_group(text: str) -> str:
    aliases = {"v1": API_GROUPS[0], "v3": API_GROUPS[1]}
    return aliases.get(text, text)


def synthetic_only(ip_family: str, whose: str) -> None:
    """Refuse ``--ip-family`` (but its default) where ``whose`` addresses decide the
    families: ignoring the flag would hide that."""
    if ip_family != "ipv4":
        raise InputError(
            f"--ip-family applies to a synthetic cluster (--nodes); {whose} "
            "addresses say which families it uses"
        )


def load_inputs(args: PlanArgs) -> Inputs:
    """Flags -> (nodes, notes, config).  Raises CalicoRRError on bad input."""
    from calico_rr.core.planning.synthetic import synthetic_cluster

    sizing: Sizing = (
        parse_steps(args.steps)
        if args.steps
        else LinearSizing(ratio=args.ratio, minimum=args.min_rrs, maximum=args.max_rrs)
    )
    config = PlanConfig(
        topology=args.topology,  # type: ignore[arg-type]  # validated by PlanConfig
        redundancy=args.redundancy,
        sizing=sizing,
        rrs=args.rrs,
        per_zone_sizing=args.per_zone_sizing,
        session_budget=args.session_budget,
        zone_label=args.zone_label or None,
        rack_label=args.rack_label,
        racks=args.racks if args.nodes_file is not None else None,
        spines=args.spines,
        preferred_label=args.preferred_label,
        dedicated_label=args.dedicated_label,
        incompatible_labels=tuple(args.incompatible_label or ()),
        cluster_id_base=args.cluster_id_base,
        api_group=_api_group(args.api_group),  # type: ignore[arg-type]
        max_restart_time=args.max_restart_time,
    )
    if (args.nodes is None) == (args.nodes_file is None):
        raise InputError("give exactly one of --nodes N (synthetic) or --nodes-file PATH")
    if args.ip_family not in ("ipv4", "ipv6", "dual"):
        raise InputError(f"--ip-family must be ipv4, ipv6 or dual, got {args.ip_family!r}")
    if args.nodes_file is not None:
        synthetic_only(args.ip_family, "a node file's")
        from calico_rr.adapters.nodes_io import load_nodes

        loaded, notes = load_nodes(args.nodes_file)
        return Inputs(loaded, list(notes), config)
    assert args.nodes is not None
    generated = synthetic_cluster(
        args.nodes,
        zones=args.zones,
        racks=args.racks or 0,
        unhealthy=args.unhealthy,
        zone_label=args.zone_label or ZONE_LABEL,
        rack_label=args.rack_label,
        ip_family=args.ip_family,
    )
    return Inputs(generated, [], config)


def _with_options(
    fn: Callable[..., None], param: str, flags: type[Any], *, last: bool = False
) -> Callable[..., None]:
    """Give a command a family of shared flags, the fields of the dataclass ``flags``:
    typer sees one flat signature (so ``--help`` lists every flag), the command
    receives them built into one ``param`` argument.  The shared flags come before
    its own (or after: ``last``)."""
    # Annotations are strings under `from __future__ import annotations`: resolve
    # them, or typer would not see the Annotated option metadata.
    flag_hints = typing.get_type_hints(flags, include_extras=True)
    shared = [
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=flag_hints[f.name]
        )
        for f in fields(flags)
    ]
    names = {p.name for p in shared}

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> None:
        gathered = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        fn(**{param: flags(**gathered)}, **kwargs)

    hints = typing.get_type_hints(fn, include_extras=True)
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name])
        for p in inspect.signature(fn).parameters.values()
        if p.name != param
    ]
    ordered = own + shared if last else shared + own
    wrapper.__signature__ = inspect.Signature(ordered)  # type: ignore[attr-defined]
    return wrapper


def with_plan_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command the shared planning flags, gathered in one ``plan_args``
    (:class:`PlanArgs`, for :func:`load_inputs`)."""
    return _with_options(fn, "plan_args", PlanArgs)


# -- the operator ------------------------------------------------------------------

KubeconfigOpt = Annotated[
    str | None,
    typer.Option(
        help="kubeconfig file (default: $KUBECONFIG, its files merged as kubectl merges "
        "them, in-cluster, then ~/.kube/config)."
    ),
]
ContextOpt = Annotated[
    str | None,
    typer.Option("--context", help="kubeconfig context to use (default: the current-context)."),
]


@dataclass(frozen=True)
class Datastore:
    """Which datastore a command talks to, from its flags over Calico's variables
    (DATASTORE_TYPE, ETCD_*): the one place a command is wired to one.  Its fields
    are the flags every command that reaches a datastore takes, after its own."""

    datastore_type: Annotated[
        str | None,
        typer.Option(help="Calico's datastore: kubernetes | etcdv3 (default: $DATASTORE_TYPE)."),
    ] = None
    etcd_endpoints: Annotated[
        str | None, typer.Option(help="etcdv3: comma-separated URLs (default: $ETCD_ENDPOINTS).")
    ] = None
    etcd_ca_cert_file: Annotated[
        str | None, typer.Option(help="etcdv3: CA file (default: $ETCD_CA_CERT_FILE).")
    ] = None
    etcd_cert_file: Annotated[
        str | None, typer.Option(help="etcdv3: client certificate (default: $ETCD_CERT_FILE).")
    ] = None
    etcd_key_file: Annotated[
        str | None, typer.Option(help="etcdv3: client key (default: $ETCD_KEY_FILE).")
    ] = None
    etcd_username: Annotated[
        str | None,
        typer.Option(
            help="etcdv3: etcd user (default: $ETCD_USERNAME); the password is read from "
            "$ETCD_PASSWORD only."
        ),
    ] = None

    @property
    def is_etcd(self) -> bool:
        from calico_rr.adapters.etcd.config import datastore_type as pick_datastore

        return pick_datastore(flag=self.datastore_type) == "etcdv3"

    def etcd_client(self) -> EtcdClient:
        """A client for Calico's etcd from the --etcd-* flags over the ETCD_* variables."""
        from calico_rr.adapters.etcd.client import EtcdClient
        from calico_rr.adapters.etcd.config import etcd_settings

        settings = etcd_settings(
            endpoints=self.etcd_endpoints,
            ca_cert_file=self.etcd_ca_cert_file,
            cert_file=self.etcd_cert_file,
            key_file=self.etcd_key_file,
            username=self.etcd_username,
        )
        return EtcdClient.from_settings(settings)

    def session(
        self,
        kubeconfig: str | None,
        context: str | None,
        *,
        on_etcd: Callable[[EtcdClient], T],
        on_kube: Callable[[KubeClient], T],
    ) -> T:
        """``on_etcd`` or ``on_kube`` on a client of the datastore chosen, closed after."""
        if self.is_etcd:
            with self.etcd_client() as etcd:
                return on_etcd(etcd)
        from calico_rr.adapters.kube.client import KubeClient

        with KubeClient.load(kubeconfig, context=context) as client:
            return on_kube(client)


def with_datastore_options(fn: Callable[..., None]) -> Callable[..., None]:
    """Give a command the datastore flags, gathered in one ``datastore`` argument."""
    return _with_options(fn, "datastore", Datastore, last=True)
