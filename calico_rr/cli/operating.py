"""``calico-rr run``, ``uninstall`` and ``demo``: the operator on either datastore."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from calico_rr.cli.base import (
    Datastore,
    JsonOpt,
    KubeconfigOpt,
    _guard,
    app,
    print_result,
    progress_printer,
    with_datastore_options,
)
from calico_rr.errors import InputError


@app.command()
@with_datastore_options
def run(
    datastore: Datastore,
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

    from calico_rr.adapters.etcd.operator import EtcdOperator
    from calico_rr.adapters.kube.client import KubeClient
    from calico_rr.adapters.kube.operator import Operator
    from calico_rr.adapters.observe import Health, OperatorMetrics, serve, setup_logging

    setup_logging(log_level)
    metrics = OperatorMetrics()
    health = Health()

    def start() -> Operator | EtcdOperator:
        if datastore.is_etcd:
            source = _node_health_source(node_health)
            etcd = datastore.etcd_client()
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
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600.0,
) -> None:
    """Put the cluster back on the node-to-node mesh and remove everything calico-rr made.

    Deletes the RouteReflectorConfig; its finalizer keeps it until the mesh is back
    on and confirmed, our peerings, labels and annotations are gone.  On etcd
    (DATASTORE_TYPE=etcdv3) the config key is marked deleted and kept until then."""
    from calico_rr.adapters.observe import setup_logging

    setup_logging("info", json_format=False)

    def run_it() -> str:
        if datastore.is_etcd:
            from calico_rr.adapters.etcd.operator import uninstall as etcd_uninstall

            etcd = datastore.etcd_client()
            with etcd:
                return etcd_uninstall(etcd, timeout=timeout)
        from calico_rr.adapters.kube.client import KubeClient
        from calico_rr.adapters.kube.operator import uninstall as run_uninstall

        return run_uninstall(KubeClient.load(kubeconfig), timeout=timeout)

    typer.echo(_guard(run_it))


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

    progress = progress_printer(as_json)
    result = _guard(
        lambda: run_demo(nodes=nodes, zones=zones, topology=topology, progress=progress)
    )
    print_result(result, "calico-rr demo", as_json=as_json, skip="join_writes", cell=_cell)
    if not (result.get("converged") and result.get("verified")):
        raise typer.Exit(1)


def _cell(value: object) -> str:
    """A demo result's value in the table: a dict as ``key=value, ...``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
