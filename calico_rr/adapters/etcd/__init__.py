"""Calico's etcdv3 datastore: an etcd v3 client over the JSON gateway (``client``,
with its ``values``, ``errors`` and ``watch`` streams), settings from Calico's
environment variables (``config``), leader election on an etcd lease (``leader``)
and what ``calico-rr doctor`` reads from etcd (``inventory``).  The Calico key
layout and document conversions are pure and live in ``calico_rr.core.formats.etcd``.
See docs/ETCD.md."""

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.config import EtcdSettings, datastore_type, etcd_settings
from calico_rr.adapters.etcd.errors import (
    Compacted,
    Conflict,
    EtcdAuthError,
    EtcdError,
    EtcdTLSError,
    EtcdUnavailable,
    Fenced,
    LeaseNotFound,
)
from calico_rr.adapters.etcd.leader import EtcdLeaderElector
from calico_rr.adapters.etcd.values import (
    EventType,
    Fence,
    KeyValue,
    Lease,
    ListResult,
    Progress,
    WatchEvent,
)
from calico_rr.adapters.etcd.watch import Watch

__all__ = [
    "Compacted",
    "Conflict",
    "EtcdAuthError",
    "EtcdClient",
    "EtcdError",
    "EtcdLeaderElector",
    "EtcdSettings",
    "EtcdTLSError",
    "EtcdUnavailable",
    "EventType",
    "Fence",
    "Fenced",
    "KeyValue",
    "Lease",
    "LeaseNotFound",
    "ListResult",
    "Progress",
    "Watch",
    "WatchEvent",
    "datastore_type",
    "etcd_settings",
]
