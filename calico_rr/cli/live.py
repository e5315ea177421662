"""A live cluster as the input of ``plan``, ``render``, ``verify`` and ``diff``:
``--kubeconfig`` / ``--context`` instead of a nodes file or a resources file.

Read once through the Kubernetes adapter (adapters/kube/live.py); the commands then
run exactly as they do on a file holding the same objects."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from calico_rr.cli.base import Inputs, PlanArgs, load_inputs, synthetic_only
from calico_rr.errors import InputError


def is_live(kubeconfig: str | None, context: str | None) -> bool:
    """A live cluster is asked for: either flag names one."""
    return kubeconfig is not None or context is not None


def flags_config(plan_args: PlanArgs) -> Any:
    """The PlanConfig of the planning flags alone (no nodes read or generated), as for
    a nodes file: ``--racks`` generates racks for unlabelled nodes.  Only a live
    cluster's commands call it, so ``--ip-family`` is refused here: the cluster's
    own addresses decide its families."""
    synthetic_only(plan_args.ip_family, "a live cluster's")
    config = load_inputs(replace(plan_args, nodes=0, nodes_file=None)).config
    return replace(config, racks=plan_args.racks)


def plan_inputs(plan_args: PlanArgs, kubeconfig: str | None, context: str | None) -> Inputs:
    """Nodes and config for a planning command: the flags' nodes (--nodes or
    --nodes-file), or the cluster's Nodes (--kubeconfig/--context)."""
    if not is_live(kubeconfig, context):
        return load_inputs(plan_args)
    if plan_args.nodes is not None or plan_args.nodes_file is not None:
        raise InputError(
            "give either a live cluster (--kubeconfig/--context) or --nodes/--nodes-file"
        )
    config = flags_config(plan_args)
    from calico_rr.adapters.kube.client import KubeClient
    from calico_rr.adapters.kube.live import live_nodes

    with KubeClient.load(kubeconfig, context=context) as client:
        nodes, notes = live_nodes(client)
    return Inputs(nodes, notes, config)


def live_resources(kubeconfig: str | None, context: str | None) -> list[dict[str, Any]]:
    """The cluster's Nodes, BGPPeers and BGPConfigurations (for ``verify``)."""
    from calico_rr.adapters.kube.client import KubeClient
    from calico_rr.adapters.kube.live import verify_documents

    with KubeClient.load(kubeconfig, context=context) as client:
        return verify_documents(client)
