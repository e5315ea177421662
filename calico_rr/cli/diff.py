"""``calico-rr diff``: a live cluster against the plan, as the operator would change it.

The cluster is read once (adapters/kube/live.py) into the operator's own view
(``Observed``); the preview (core/operator/preview.py) runs the operator's reconcile
on a copy of it to the end; what differs is printed per object, ``+``/``-`` per
label, annotation or field, and the end state's writes are sent with ``dryRun=All``
so that the API server says it would accept them.  Exit 0: nothing would change;
1: something would; 2: bad input (or a cluster that cannot be read)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any

import typer

from calico_rr.cli.base import (
    ContextOpt,
    KubeconfigOpt,
    PlanArgs,
    _guard,
    app,
    with_plan_options,
)
from calico_rr.cli.live import flags_config
from calico_rr.errors import InputError

DRY_RUN_HELP = (
    "Send the end state's writes with dryRun=All, so the API server validates and admits "
    "them and stores nothing (needs the operator's write permissions; --no-dry-run for a "
    "read-only user)."
)


@app.command()
@with_plan_options
def diff(
    plan_args: PlanArgs,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run/--no-dry-run", help=DRY_RUN_HELP)] = True,
) -> None:
    """Show what the operator would change in the live cluster (Kubernetes datastore).

    Plans with the cluster's RouteReflectorConfig when it has one (as the operator
    would, also while paused), else with the planning flags.  Exit code 0: nothing
    would change; 1: something would; 2: bad input."""
    from calico_rr.adapters.kube.client import KubeClient
    from calico_rr.adapters.kube.live import dry_run as send_dry_run
    from calico_rr.adapters.kube.live import observed, read_cluster
    from calico_rr.core.operator.preview import preview
    from calico_rr.core.operator.settings import OperatorSettings, settings_from_spec

    def run() -> tuple[Any, str, list[str] | None, str]:
        if plan_args.nodes is not None or plan_args.nodes_file is not None:
            raise InputError("diff reads the nodes from the cluster: drop --nodes/--nodes-file")
        # The flags are checked even when the config wins: bad input is bad input.
        flags = flags_config(plan_args)
        with KubeClient.load(kubeconfig, context=context) as client:
            live = read_cluster(client)
            if live.config is not None:
                spec = live.config.get("spec") or {}
                settings = settings_from_spec(spec, env=os.environ, api_group=live.api_group)
                source = "the RouteReflectorConfig 'default' (the planning flags are ignored)"
            else:
                plan = replace(flags, api_group=live.api_group)
                settings = OperatorSettings(plan=plan)
                source = "the planning flags (the cluster has no RouteReflectorConfig)"
            shown = preview(observed(live, now=time.time()), settings)
            refused = send_dry_run(client, live, shown) if dry_run and shown.changes else None
        return shown, source, refused, live.api_group

    shown, source, refused, group = _guard(run)
    for line in diff_lines(shown):
        typer.echo(line)
    for line in footer(shown, source, refused, group):
        typer.echo(line)
    raise typer.Exit(1 if shown.changes else 0)


def _pairs(values: Mapping[str, str]) -> dict[str, str]:
    """Our node fields as printed: ``label k=v`` / ``annotation k=v`` (for ``@k``)."""
    return {
        f"annotation {key[1:]}" if key.startswith("@") else f"label {key}": value
        for key, value in values.items()
    }


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """``- k=v`` for what goes or changes, ``+ k=v`` for what comes or changes."""
    lines: list[str] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if old is not None:
            lines.append(f"- {key}={old}")
        if new is not None:
            lines.append(f"+ {key}={new}")
    return lines


def _peer_fields(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    if obj is None:
        return {}
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {f"labels.{k}": v for k, v in (meta.get("labels") or {}).items()}
    out.update({f"spec.{k}": v for k, v in (obj.get("spec") or {}).items()})
    return out


def diff_lines(shown: Any) -> list[str]:
    """The end state against the cluster, object by object (kubectl diff's style)."""
    lines: list[str] = []
    for change in shown.nodes:
        lines.append(f"~ node/{change.name}")
        lines += [f"  {line}" for line in _changed(_pairs(change.before), _pairs(change.after))]
    for peer in shown.peers:
        mark = "+" if peer.before is None else "-" if peer.after is None else "~"
        lines.append(f"{mark} bgppeer/{peer.name}")
        lines += [
            f"  {line}" for line in _changed(_peer_fields(peer.before), _peer_fields(peer.after))
        ]
    if shown.mesh_before != shown.mesh_after:
        lines.append("~ bgpconfiguration/default")
        lines.append(f"  - spec.nodeToNodeMeshEnabled={str(shown.mesh_before).lower()}")
        lines.append(f"  + spec.nodeToNodeMeshEnabled={str(shown.mesh_after).lower()}")
    return lines


def footer(shown: Any, source: str, refused: list[str] | None, group: str) -> list[str]:
    """How the plan was made, where the operator would end, the gate, the dry run."""
    lines = [
        f"# planned with {source}; Calico API group {group}",
        f"# {shown.summary()}",
    ]
    if shown.changes:
        lines.append("# the operator would go: " + " -> ".join(shown.steps))
    if shown.held:
        lines.append(f"# the operator would hold ({shown.outcome}): {shown.held}")
    table = shown.make_state_table()
    if table is not None:
        lines.append(f"# make state (while the new sessions are confirmed): {table.describe()}")
        if table.warns:
            lines.append(
                "#   old and new peerings coexist that long; plan the final topology from "
                "the start, or switch in a quiet window (docs/OPERATIONS.md)"
            )
    gate = shown.gate
    if gate is not None and not gate.ok:
        lines.append("# safety gate: REFUSED - the planned layout would cut nodes off:")
        lines += [f"#   {line}" for line in gate.explain().splitlines()]
    elif gate is not None:
        lines.append("# safety gate: passes (every node keeps a route to every other)")
    if refused is None:
        if shown.changes:
            lines.append("# dry run: not sent (--no-dry-run)")
    elif refused:
        lines.append(f"# dry run (dryRun=All): the API server refuses {len(refused)} write(s):")
        lines += [f"#   {line}" for line in refused]
    else:
        lines.append("# dry run (dryRun=All): the API server accepts every write")
    return lines
