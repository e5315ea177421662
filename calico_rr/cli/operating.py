"""``calico-rr run``, ``uninstall`` and ``demo``: the operator on either datastore."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from calico_rr.cli.base import (
    ContextOpt,
    Datastore,
    JsonOpt,
    KubeconfigOpt,
    OutputFormat,
    OutputOpt,
    TopologyOpt,
    _guard,
    app,
    check_html,
    emit,
    is_data,
    output_format,
    print_result,
    progress_printer,
    with_datastore_options,
)
from calico_rr.errors import InputError


class _KubectlBools(TyperCommand):
    """Also takes ``--leader-elect=true|false``, as kube-controller-manager does, so
    flags copied from a Kubernetes controller's manifest work unchanged."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, [_kubectl_bool(arg) for arg in args])


def _kubectl_bool(arg: str) -> str:
    """kubectl's spelling of run's bool flag (``--leader-elect=false``) -> typer's."""
    name, eq, value = arg.partition("=")
    if not eq or name != "--leader-elect":
        return arg
    if value.lower() in ("true", "1", "yes"):
        return name
    if value.lower() in ("false", "0", "no"):
        return "--no-" + name[2:]
    raise typer.BadParameter(f"{name} takes true or false, got {value!r}")


# Leader election, named as kube-controller-manager names it (docs/OPERATIONS.md).
LeaderElectOpt = Annotated[
    bool,
    typer.Option(
        "--leader-elect/--no-leader-elect",
        help="Elect a leader among the replicas (also --leader-elect=false); off: run "
        "exactly one replica.",
    ),
]
LeaseDurationOpt = Annotated[
    str,
    typer.Option(
        "--leader-elect-lease-duration",
        "--lease-duration",
        help="How long a Lease lasts unrenewed: seconds or a Go duration.",
    ),
]
RenewDeadlineOpt = Annotated[
    str | None,
    typer.Option(
        "--leader-elect-renew-deadline",
        help="The leader steps down after this long without renewing (< lease "
        "duration; default 2/3 of it).",
    ),
]
RetryPeriodOpt = Annotated[
    str | None,
    typer.Option(
        "--leader-elect-retry-period",
        help="Time between election rounds (< renew deadline; default 1/5 of the lease duration).",
    ),
]

NodeHealthOpt = Annotated[
    str | None,
    typer.Option(
        help="etcdv3: where node health comes from: felix (Felix liveness reports in "
        "etcd) | kubernetes (Kubernetes Nodes: Ready, cordon, taints; uses "
        "--kubeconfig or the in-cluster account). Default: $CALICO_RR_NODE_HEALTH or felix."
    ),
]


@app.command(cls=_KubectlBools)
@with_datastore_options
def run(
    datastore: Datastore,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            help="Namespace of the leader-election Lease (default: $POD_NAMESPACE, else the "
            "pod's ServiceAccount namespace, else calico-rr)."
        ),
    ] = None,
    identity: Annotated[
        str | None, typer.Option(help="This replica's name in the Lease (default: host-pid).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port of /healthz, /readyz and /metrics.")] = 8080,
    leader_elect: LeaderElectOpt = True,
    lease_duration: LeaseDurationOpt = "15s",
    renew_deadline: RenewDeadlineOpt = None,
    retry_period: RetryPeriodOpt = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error.")] = "info",
    node_health: NodeHealthOpt = None,
) -> None:
    """Run the operator: watch the cluster, keep route reflectors and BGP config right.

    With DATASTORE_TYPE=etcdv3 (or --datastore-type etcdv3) it runs on Calico's etcd;
    its config is /calico-rr/config/default there (docs/ETCD.md)."""
    import signal
    import threading

    from calico_rr.adapters.etcd.operator import EtcdOperator
    from calico_rr.adapters.kube.client import KubeClient
    from calico_rr.adapters.kube.leader import lease_namespace
    from calico_rr.adapters.kube.operator import Operator
    from calico_rr.adapters.observe import Health, OperatorMetrics, serve, setup_logging

    election = _guard(lambda: _election(leader_elect, lease_duration, renew_deadline, retry_period))
    setup_logging(log_level)
    metrics = OperatorMetrics()
    health = Health()

    def start() -> Operator | EtcdOperator:
        # what both operators take alike
        both = {"identity": identity, "metrics": metrics, "health": health, **election}
        kube = partial(KubeClient.load, kubeconfig, context=context, on_request=metrics.on_request)
        if not datastore.is_etcd:
            return Operator(kube(), namespace=lease_namespace(namespace), **both)
        from calico_rr.adapters.etcd.kube_health import KubeNodeHealth

        source = _node_health_source(node_health)
        etcd = datastore.etcd_client()
        kube_health = KubeNodeHealth(kube()) if source == "kubernetes" else None
        return EtcdOperator(etcd, kube_health=kube_health, **both)

    op = _guard(start)
    server = serve(port, metrics, health)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    op.start()
    stop.wait()
    op.stop()
    server.shutdown()


def _election(
    leader_elect: bool, lease_duration: str, renew_deadline: str | None, retry_period: str | None
) -> dict[str, Any]:
    """Both operators' election arguments, the timing checked (InputError: exit 2)."""
    from calico_rr.core.election import election_timing

    timing = election_timing(lease_duration, renew_deadline, retry_period)
    return {
        "leader_election": leader_elect,
        "lease_duration": timing.lease_duration,
        "renew_deadline": timing.renew_deadline,
        "retry_period": timing.retry_period,
    }


def _node_health_source(flag: str | None) -> str:
    """etcdv3: felix or kubernetes, from --node-health over $CALICO_RR_NODE_HEALTH."""
    source = (flag or os.environ.get("CALICO_RR_NODE_HEALTH") or "felix").lower()
    if source not in ("felix", "kubernetes"):
        raise InputError(
            f"node health source must be felix or kubernetes, got {source!r}",
            field="--node-health / CALICO_RR_NODE_HEALTH",
        )
    return source


@app.command()
@with_datastore_options
def uninstall(
    datastore: Datastore,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600.0,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Only print what uninstall would do (objects deleted, labels removed, the "
            "mesh switched on), read from the datastore; write nothing.",
        ),
    ] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Put the cluster back on the node-to-node mesh and remove everything calico-rr made.

    Deletes the RouteReflectorConfig; its finalizer keeps it until the mesh is back
    on and confirmed, our peerings, labels and annotations are gone.  On etcd
    (DATASTORE_TYPE=etcdv3) the config key is marked deleted and kept until then."""
    from calico_rr.adapters.observe import setup_logging

    setup_logging("info", json_format=False)
    if dry_run:
        from calico_rr.adapters.uninstall_preview import preview_etcd, preview_kube

        preview = _guard(
            lambda: datastore.session(
                kubeconfig,
                context,
                on_etcd=lambda etcd: preview_etcd(etcd, timeout=timeout),
                on_kube=lambda client: preview_kube(client, timeout=timeout),
            )
        )
        emit(preview, output, _preview_lines(preview, wide=output == OutputFormat.wide))
        return
    from calico_rr.adapters.etcd.operator import uninstall as etcd_uninstall
    from calico_rr.adapters.kube.operator import uninstall as kube_uninstall

    message = _guard(
        lambda: datastore.session(
            kubeconfig,
            context,
            on_etcd=lambda etcd: etcd_uninstall(etcd, timeout=timeout),
            on_kube=lambda client: kube_uninstall(client, timeout=timeout),
        )
    )
    emit({"uninstalled": True, "message": message}, output, [message])


def _preview_lines(preview: dict[str, Any], *, wide: bool) -> Iterator[str]:
    """The dry run in lines: each step, then the config's deletion.  The nodes are
    listed one by one with -o wide; else counted, with the keys removed."""
    yield "dry run, nothing written: `calico-rr uninstall` would"
    for i, step in enumerate(preview["steps"], 1):
        yield f"{i}. {step['message']}"
        for name in step.get("create_bgppeers", []):
            yield f"   create BGPPeer {name}"
        if "node_to_node_mesh" in step:
            state = "on" if step["node_to_node_mesh"] else "off"
            yield f"   switch the node-to-node mesh {state}"
        if "then_wait_seconds" in step:
            yield f"   then wait {step['then_wait_seconds']:g}s for the mesh's sessions"
        nodes = step.get("remove_from_nodes", [])
        if nodes and wide:
            for n in nodes:
                keys = ", ".join([*n["labels"], *n["annotations"]])
                yield f"   remove from node {n['name']}: {keys}"
        elif nodes:
            every = sorted({k for n in nodes for k in (*n["labels"], *n["annotations"])})
            yield f"   remove from {len(nodes)} nodes: {', '.join(every)}"
        for name in step.get("delete_bgppeers", []):
            yield f"   delete BGPPeer {name}"
        for name in step.get("delete_caliconodestatuses", []):
            yield f"   delete CalicoNodeStatus {name}"
    yield f"then delete {preview['delete']}"


@app.command()
def demo(
    nodes: Annotated[int, typer.Option(help="Synthetic nodes to create.")] = 1000,
    zones: Annotated[int, typer.Option(help="Zones to spread them over.")] = 3,
    topology: TopologyOpt = "auto",
    datastore: Annotated[
        str,
        typer.Option(
            help="kubernetes (a local kube-apiserver + etcd) | etcdv3 (Calico's etcd "
            "datastore: a local etcd with TLS)."
        ),
    ] = "kubernetes",
    report: Annotated[
        str | None,
        typer.Option(
            "--report",
            metavar="PATH",
            help="The HTML page to write about the run (default: "
            "calico-rr-demo-report.html in the current directory).",
        ),
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Write no HTML page.")] = False,
    output: OutputOpt = OutputFormat.table,
    as_json: JsonOpt = False,
    ip_family: Annotated[
        str,
        typer.Option(
            "--ip-family",
            help="The synthetic nodes' addresses: ipv4 | ipv6 | dual (both on every "
            "node; the verification covers each family).",
        ),
    ] = "ipv4",
) -> None:
    """Start a local kube-apiserver + etcd (or, with --datastore etcdv3, a local etcd
    as Calico's datastore), run the operator on N synthetic nodes, verify the
    result, fail a zone and show it re-converge; then write an HTML page about it."""
    if ip_family not in ("ipv4", "ipv6", "dual"):
        # before anything starts: a bad flag must not cost a control plane's start
        typer.echo(f"--ip-family must be ipv4, ipv6 or dual, got {ip_family!r}", err=True)
        raise typer.Exit(2)
    if datastore == "kubernetes":
        from calico_rr.adapters.kube.demo import run_demo
    elif datastore == "etcdv3":
        from calico_rr.adapters.etcd.demo import run_demo
    else:
        typer.echo(f"--datastore {datastore!r}: must be 'kubernetes' or 'etcdv3'", err=True)
        raise typer.Exit(2)

    from calico_rr.adapters.demo import DemoTrace

    fmt = output_format(output, as_json)
    progress = progress_printer(fmt)
    page = None if no_report else _guard(lambda: _report_path(report))
    trace = DemoTrace()
    result = _guard(
        lambda: run_demo(
            nodes=nodes,
            zones=zones,
            topology=topology,
            progress=progress,
            trace=trace,
            ip_family=ip_family,
        )
    )
    if page is not None:
        from calico_rr.adapters.demo_report import write_demo_report

        _guard(lambda: write_demo_report(page, result, trace, datastore=datastore))
    result["report"] = page
    print_result(result, "calico-rr demo", fmt=fmt, skip=("join_writes", "report"), cell=_cell)
    if page is not None and not is_data(fmt):
        typer.echo(f"report: {page}")
    if not (result.get("converged") and result.get("verified")):
        raise typer.Exit(1)


def _report_path(path: str | None) -> str:
    """The demo's HTML page, absolute; checked before the demo runs (exit 2)."""
    from calico_rr.adapters.demo_report import DEFAULT_REPORT

    path = path or DEFAULT_REPORT
    check_html(path, "--report")
    return os.path.abspath(path)


def _cell(value: object) -> str:
    """A demo result's value in the table: a dict as ``key=value, ...`` (a nested one,
    such as the verification's families, in parentheses)."""
    if isinstance(value, dict):
        return ", ".join(
            f"{k}=({_cell(v)})" if isinstance(v, dict) else f"{k}={v}" for k, v in value.items()
        )
    return str(value)
