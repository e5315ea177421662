"""``calico-rr uninstall --dry-run``: what the uninstall would write, read from the
datastore and decided by the core (:func:`core.uninstall_preview`), nothing written.

An operator replica is assembled as ``uninstall`` assembles it (no elector), but only
its caches run: they LIST (and watch) until synced, the pass's store and status are
read once, and the core decides the steps on that snapshot.  No port that writes is
called, so a dry run changes nothing, whatever it finds.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from calico_rr.core import operator as core
from calico_rr.core.operator.settings import CONFIG_NAME, CRD_KIND, CRD_PLURAL
from calico_rr.errors import ConfigError

if TYPE_CHECKING:
    from calico_rr.adapters.etcd.client import EtcdClient
    from calico_rr.adapters.kube.client import KubeClient
    from calico_rr.adapters.wiring import DatastoreOperator


def preview_kube(client: KubeClient, *, timeout: float = 60.0) -> dict[str, Any]:
    """The dry run on the Kubernetes API (what ``kube.operator.uninstall`` would do)."""
    from calico_rr.adapters.kube.api import api_path
    from calico_rr.adapters.kube.operator import Operator
    from calico_rr.adapters.kube.ports import CONFIG_API

    op = Operator(client, leader_election=False)
    if client.get(api_path(CONFIG_API, CRD_PLURAL, CONFIG_NAME)) is None:
        raise ConfigError(f"no {CRD_KIND} named {CONFIG_NAME!r}: nothing to uninstall")
    op.start_caches()
    try:
        result = _preview(op, timeout)
    finally:
        op.stop_caches()
    result.update(datastore="kubernetes", delete=f"{CRD_KIND} {CONFIG_NAME}")
    return result


def preview_etcd(client: EtcdClient, *, timeout: float = 60.0) -> dict[str, Any]:
    """The dry run on Calico's etcd (what ``etcd.operator.uninstall`` would do)."""
    from calico_rr.adapters.etcd.operator import EtcdOperator

    op = EtcdOperator(client, env={}, leader_election=False)
    op.start_caches()
    try:
        if not _synced(op, timeout) or op.caches["own"].get(op.config_key) is None:
            raise ConfigError(f"no config at {op.config_key}: nothing to uninstall")
        result = _preview(op, timeout)
    finally:
        op.stop_caches()
    result.update(datastore="etcdv3", delete=f"{op.config_key} and {op.status_key}")
    return result


def _synced(op: DatastoreOperator, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not op.synced:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _preview(op: DatastoreOperator, timeout: float) -> dict[str, Any]:
    """The steps decided on the replica's synced caches (as its uninstall pass reads
    them: ``Controller.uninstall_inputs``)."""
    if not _synced(op, timeout):
        raise TimeoutError(f"the datastore's caches did not sync in {timeout:.0f}s")
    cfg = op.store.config()
    if cfg is None:
        raise ConfigError(f"{op.store.no_config()}: nothing to uninstall")
    obs, settings, mesh_before = op.uninstall_inputs(cfg, op.status_sink.current())
    steps = core.uninstall_preview(obs, settings, mesh_before=mesh_before)
    return {
        "dry_run": True,
        "node_to_node_mesh": obs.mesh_enabled,
        "steps": steps,
    }
